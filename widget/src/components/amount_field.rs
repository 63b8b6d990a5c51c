//! The amount input: major units in the user's locale, paste-tolerant.

use leptos::prelude::*;

/// A labelled text input for an amount. `error` is shown under it and tied
/// to it with `aria-describedby`, so a screen reader reads it with the field.
#[component]
pub fn AmountField(
    /// The element id of the input.
    id: String,
    label: &'static str,
    hint: String,
    testid: &'static str,
    value: RwSignal<String>,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(into)] disabled: Signal<bool>,
    /// The currency sign shown inside the field.
    sign: &'static str,
) -> impl IntoView {
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let described_by = {
        let (hint_id, error_id) = (hint_id.clone(), error_id.clone());
        move || match error.get() {
            Some(_) => format!("{error_id} {hint_id}"),
            None => hint_id.clone(),
        }
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
                    aria-invalid=move || if error.get().is_some() { "true" } else { "false" }
                    aria-describedby=described_by
                    prop:value=move || value.get()
                    prop:disabled=move || disabled.get()
                    on:input:target=move |ev| value.set(ev.target().value())
                />
                <span class="pk-sign" aria-hidden="true">{sign}</span>
            </div>
            <p class="pk-hint" id=hint_id>{hint}</p>
            <p class="pk-error" id=error_id aria-live="polite">{move || error.get()}</p>
        </div>
    }
}
