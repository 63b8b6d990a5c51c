//! The iframe mode's modal: the hosted deposit page inside this page, in a
//! native modal `<dialog>`. `showModal()` makes the rest of the page inert
//! (focus stays in the dialog), Escape closes it, and so does the visible
//! close button; focus returns to where it was.

use leptos::prelude::*;
use pientegra_shared::Locale;

use crate::flows::Modal;
use crate::i18n::{Text as T, t};

/// The modal, showing what the flow's `modal` says; `on_close` runs when it
/// is closed (its button, Escape), `open_window` when the user asks for the
/// hosted page in a window of its own.
#[component]
pub fn HostedPageModal(
    locale: Locale,
    modal: Memo<Modal>,
    on_close: Callback<()>,
    open_window: Callback<()>,
) -> impl IntoView {
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    Effect::new(move |_| {
        let open = modal.with(|m| *m != Modal::Closed);
        let Some(dialog) = dialog.get() else { return };
        if open && !dialog.open() {
            let _ = dialog.show_modal();
        } else if !open && dialog.open() {
            dialog.close();
        }
    });
    let title_id = super::unique_id("hosted-title");
    let heading_id = title_id.clone();

    // One fixed structure whose parts show or hide, bound to `Signal<String>`
    // and `Signal<bool>` like the rest of the widget: a view per state would
    // bring Leptos's type-erased views into the wasm.
    let not_loading = Signal::derive(move || modal.with(|m| *m != Modal::Loading));
    let frame_src = Signal::derive(move || match &*modal.read() {
        Modal::Frame(url) => url.clone(),
        _ => String::new(),
    });
    let no_frame = Signal::derive(move || frame_src.with(String::is_empty));
    let reason = Signal::derive(move || match &*modal.read() {
        Modal::CannotFrame { reason, .. } => reason.clone(),
        _ => String::new(),
    });
    let no_reason = Signal::derive(move || reason.with(String::is_empty));

    view! {
        <dialog node_ref=dialog class="pk-modal" aria-labelledby=title_id data-testid="deposit-modal"
            on:close=move |_| on_close.run(())>
            <div class="pk-modal-head">
                <h2 class="pk-modal-title" id=heading_id>{t(locale, T::PopupTitle)}</h2>
                <button type="button" class="pk-modal-close" aria-label=t(locale, T::Close) data-testid="modal-close"
                    on:click=move |_| on_close.run(())>
                    "×"
                </button>
            </div>
            <p class="pk-modal-text" role="status" hidden=not_loading>{t(locale, T::PopupLoading)}</p>
            <iframe class="pk-modal-frame" src=frame_src hidden=no_frame title=t(locale, T::PopupTitle)
                data-testid="deposit-frame"></iframe>
            <div class="pk-modal-text" role="alert" hidden=no_reason>
                <p data-testid="frame-refused">{reason}</p>
                <button type="button" class="pk-button pk-primary" data-testid="open-window"
                    on:click=move |_| open_window.run(())>
                    {t(locale, T::OpenPaymentPage)}
                </button>
            </div>
        </dialog>
    }
}
