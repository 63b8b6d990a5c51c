//! The iframe mode's modal: the hosted deposit page inside this page, in a
//! native modal `<dialog>`. `showModal()` makes the rest of the page inert
//! (focus stays in the dialog), Escape closes it, and so does the visible
//! close button; focus returns to where it was.

use leptos::prelude::*;
use pientegra_shared::Locale;

use crate::i18n::{Text as T, t};

/// What the modal shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Modal {
    #[default]
    Closed,
    /// The deposit is being created.
    Loading,
    /// The hosted page, framed.
    Frame(String),
    /// The hosted page may not be framed here and the popup was blocked:
    /// why, and a button that opens it from a fresh click.
    CannotFrame { url: String, reason: String },
}

/// The modal; `open_popup` runs with the hosted page's address when the user
/// asks for it in a window of its own.
#[component]
pub fn HostedPageModal(locale: Locale, modal: RwSignal<Modal>, open_popup: Callback<String>) -> impl IntoView {
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

    let body = move || {
        match modal.get() {
        Modal::Closed => None,
        Modal::Loading => Some(view! { <p class="pk-modal-text" role="status">{t(locale, T::PopupLoading)}</p> }.into_any()),
        Modal::Frame(url) => Some(
            view! {
                <iframe class="pk-modal-frame" src=url title=t(locale, T::PopupTitle) data-testid="deposit-frame"></iframe>
            }
            .into_any(),
        ),
        Modal::CannotFrame { url, reason } => Some(
            view! {
                <div class="pk-modal-text" role="alert">
                    <p data-testid="frame-refused">{reason}</p>
                    <button type="button" class="pk-button pk-primary" data-testid="open-window"
                        on:click=move |_| { modal.set(Modal::Closed); open_popup.run(url.clone()); }>
                        {t(locale, T::OpenPaymentPage)}
                    </button>
                </div>
            }
            .into_any(),
        ),
    }
    };

    view! {
        <dialog node_ref=dialog class="pk-modal" aria-labelledby=title_id data-testid="deposit-modal"
            on:close=move |_| modal.set(Modal::Closed)>
            <div class="pk-modal-head">
                <h2 class="pk-modal-title" id=heading_id>{t(locale, T::PopupTitle)}</h2>
                <button type="button" class="pk-modal-close" aria-label=t(locale, T::Close) data-testid="modal-close"
                    on:click=move |_| modal.set(Modal::Closed)>
                    "×"
                </button>
            </div>
            {body}
        </dialog>
    }
}
