//! The amount input: major units in the user's locale, paste-tolerant.

use leptos::prelude::*;

use super::invalid;

/// A labelled text input for an amount. `error` (empty when there is none)
/// is shown under it and tied to it with `aria-describedby`, so a screen
/// reader reads it with the field.
#[component]
pub fn AmountField(
    /// The element id of the input.
    id: String,
    label: &'static str,
    hint: String,
    testid: &'static str,
    value: RwSignal<String>,
    error: Signal<String>,
    disabled: Signal<bool>,
    /// The currency sign shown inside the field.
    sign: &'static str,
) -> impl IntoView {
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let described_by = {
        let (hint_id, error_id) = (hint_id.clone(), error_id.clone());
        move || if error.with(String::is_empty) { hint_id.clone() } else { format!("{error_id} {hint_id}") }
    };
    view! {
        <div class="pk-field">
            <label class="pk-label" for=id.clone()>{label}</label>
            <div class="pk-input-wrap">
                <input
                    id=id
                    class="pk-input pk-amount"
                    type="text"
                    inputmode="decimal"
                    autocomplete="off"
                    spellcheck="false"
                    data-testid=testid
                    aria-invalid=invalid(error)
                    aria-describedby=described_by
                    prop:value=value
                    prop:disabled=disabled
                    on:input:target=move |ev| value.set(ev.target().value())
                />
                <span class="pk-sign" aria-hidden="true">{sign}</span>
            </div>
            <p class="pk-hint" id=hint_id>{hint}</p>
            <p class="pk-error" id=error_id aria-live="polite">{error}</p>
        </div>
    }
}
