//! Every user-visible string of the widget, in Turkish and English, in one table.
//!
//! `{}` in a text is a placeholder, filled in order by [`tf`]. Error codes
//! (the server's and the shared crate's) are explained here in words; a
//! server's `message` is English-only and never shown.

use pientegra_shared::Locale;
use pientegra_shared::api::codes;
use pientegra_shared::iban::IbanError;
use pientegra_shared::ids::IdError;

use crate::api::ApiFailure;

/// A text of the widget. The demo's own parts (`demo` feature) use some.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "demo"), allow(dead_code))]
pub enum Text {
    // Deposit widget
    DepositTitle,
    Balance,
    AmountLabel,
    AmountHint,
    Presets,
    DepositButton,
    Preparing,
    PopupTitle,
    PopupLoading,
    IdleHint,
    Creating,
    PopupBlocked,
    PopupBlockedHelp,
    ContinueHere,
    UnsafeUrl,
    WaitingTransfer,
    WaitingTransferHelp,
    TimeLeft,
    OpenPaymentPage,
    UnderReview,
    UnderReviewHelp,
    Approved,
    NewBalance,
    NewDeposit,
    Rejected,
    Reason,
    NoReason,
    Expired,
    ExpiredHelp,
    StartAgain,
    LateArrival,
    LateArrivalHelp,
    ReferenceIs,
    // Withdrawal form
    WithdrawTitle,
    Available,
    Reserved,
    IbanLabel,
    IbanHint,
    IbanValid,
    HolderLabel,
    WithdrawButton,
    Sending,
    WithdrawIdle,
    WithdrawalSummary,
    InsufficientFunds,
    StepReceived,
    StepReview,
    StepSent,
    StepRejected,
    StepReturned,
    WithdrawReceived,
    WithdrawReceivedHelp,
    WithdrawApproved,
    WithdrawApprovedHelp,
    WithdrawSent,
    WithdrawSentHelp,
    WithdrawRejected,
    WithdrawRejectedHelp,
    WithdrawReturned,
    WithdrawReturnedHelp,
    // Activity and event log
    Activity,
    NoActivity,
    KindDeposit,
    KindWithdrawal,
    LiveEvents,
    NoEvents,
    LinkConnecting,
    LinkLive,
    LinkPolling,
    Close,
    FrameForbidden,
    FrameUnknown,
    OpenedInWindow,
}

impl Text {
    /// (Turkish, English)
    fn pair(self) -> (&'static str, &'static str) {
        use Text::*;
        match self {
            DepositTitle => ("Para yatır", "Deposit"),
            Balance => ("Bakiye", "Balance"),
            AmountLabel => ("Tutar", "Amount"),
            AmountHint => ("En az {}, en çok {}.", "From {} to {}."),
            Presets => ("Hazır tutarlar", "Preset amounts"),
            DepositButton => ("Para yatır", "Deposit"),
            Preparing => ("Hazırlanıyor…", "Preparing…"),
            PopupTitle => ("Pientegra ödeme", "Pientegra payment"),
            PopupLoading => ("Ödeme sayfası açılıyor…", "Opening the payment page…"),
            IdleHint => (
                "Bir tutar girin ve Para yatır'a basın. Ödeme sayfası yeni bir pencerede açılır.",
                "Enter an amount and press Deposit. The payment page opens in a new window.",
            ),
            Creating => ("Para yatırma işleminiz hazırlanıyor…", "Preparing your deposit…"),
            PopupBlocked => ("Tarayıcınız ödeme penceresini engelledi.", "Your browser blocked the payment window."),
            PopupBlockedHelp => (
                "Ödemeye bu sekmede devam edebilirsiniz; işlem bittiğinde bu sayfaya geri dönün.",
                "You can continue the payment in this tab and come back to this page when you are done.",
            ),
            ContinueHere => ("Bu sekmede devam et", "Continue in this tab"),
            UnsafeUrl => (
                "Ödeme sayfasının adresi güvenli değil; işlem durduruldu.",
                "The payment page address is not secure, so the deposit was stopped.",
            ),
            WaitingTransfer => ("Havalenizi bekliyoruz", "Waiting for your transfer"),
            WaitingTransferHelp => (
                "Ödeme sayfasındaki hesaba {} gönderin; açıklamaya {} referansını yazın.",
                "Send {} to the account shown on the payment page, with reference {}.",
            ),
            TimeLeft => ("Kalan süre:", "Time left:"),
            OpenPaymentPage => ("Ödeme sayfasını aç", "Open the payment page"),
            UnderReview => ("Havaleniz inceleniyor", "Your transfer is under review"),
            UnderReviewHelp => {
                ("Onaylandığında bakiyeniz güncellenecek.", "Your balance is updated as soon as it is approved.")
            }
            Approved => ("Onaylandı: {}", "Approved: {}"),
            NewBalance => ("Yeni bakiye:", "New balance:"),
            NewDeposit => ("Yeni para yatır", "New deposit"),
            Rejected => ("Para yatırma reddedildi", "Deposit rejected"),
            Reason => ("Gerekçe:", "Reason:"),
            NoReason => ("belirtilmedi.", "none given."),
            Expired => ("Süre doldu", "Time ran out"),
            ExpiredHelp => (
                "Süre içinde bir havale gelmedi. Yeniden başlayabilirsiniz.",
                "No transfer arrived in time. You can start again.",
            ),
            StartAgain => ("Yeniden başla", "Start again"),
            LateArrival => ("Havaleniz geç ulaştı", "Your transfer arrived late"),
            LateArrivalHelp => (
                "Süre dolduktan sonra gelen havaleniz inceleniyor.",
                "It arrived after the time ran out and is being reviewed.",
            ),
            ReferenceIs => ("Referans: {}.", "Reference: {}."),
            WithdrawTitle => ("Para çek", "Withdraw"),
            Available => ("Çekilebilir", "Available"),
            Reserved => ("Bekleyen çekimler", "Reserved"),
            IbanLabel => ("IBAN", "IBAN"),
            IbanHint => (
                "Kendi adınıza açılmış bir TR IBAN'ı; TR yazmadan da girebilirsiniz.",
                "A TR IBAN in your own name; you may leave out the TR.",
            ),
            IbanValid => ("IBAN geçerli.", "The IBAN is valid."),
            HolderLabel => ("Hesap sahibinin adı", "Account holder's name"),
            WithdrawButton => ("Para çek", "Withdraw"),
            Sending => ("Gönderiliyor…", "Sending…"),
            WithdrawIdle => (
                "Tutarı, IBAN'ı ve hesap sahibinin adını girin.",
                "Enter the amount, the IBAN and the account holder's name.",
            ),
            WithdrawalSummary => ("Tutar: {}, referans: {}.", "Amount: {}, reference: {}."),
            InsufficientFunds => {
                ("Bakiyeniz yetersiz: en çok {} çekebilirsiniz.", "Insufficient funds: you can withdraw at most {}.")
            }
            StepReceived => ("Talep alındı", "Request received"),
            StepReview => ("İnceleniyor", "Under review"),
            StepSent => ("Gönderildi", "Sent"),
            StepRejected => ("Reddedildi", "Rejected"),
            StepReturned => ("İade edildi", "Returned"),
            WithdrawReceived => ("Talebiniz alındı ve inceleniyor", "Request received and under review"),
            WithdrawReceivedHelp => (
                "Tutar, sonuçlanana kadar bakiyenizde ayrılmış olarak bekler.",
                "The amount is held in your balance until it is settled.",
            ),
            WithdrawApproved => ("Onaylandı, gönderiliyor", "Approved, on its way"),
            WithdrawApprovedHelp => {
                ("Para banka hesabınıza gönderiliyor.", "The money is being sent to your bank account.")
            }
            WithdrawSent => ("Gönderildi", "Sent"),
            WithdrawSentHelp => ("Para {} hesabına gönderildi.", "The money was sent to {}."),
            WithdrawRejected => ("Çekim talebi reddedildi", "Withdrawal rejected"),
            WithdrawRejectedHelp => ("Ayrılan tutar yeniden kullanılabilir.", "The held amount is available again."),
            WithdrawReturned => ("Banka parayı iade etti", "The bank returned the money"),
            WithdrawReturnedHelp => ("Tutar bakiyenize geri eklendi.", "The amount is back in your balance."),
            Activity => ("Hesap hareketleri", "Activity"),
            NoActivity => ("Henüz bir hareket yok.", "Nothing here yet."),
            KindDeposit => ("Yatırma", "Deposit"),
            KindWithdrawal => ("Çekme", "Withdrawal"),
            LiveEvents => ("Canlı olaylar", "Live events"),
            NoEvents => ("Henüz olay gelmedi.", "No events received yet."),
            LinkConnecting => ("bağlanıyor…", "connecting…"),
            LinkLive => ("canlı", "live"),
            LinkPolling => ("aralıklı yenileme", "polling"),
            Close => ("Kapat", "Close"),
            FrameForbidden => (
                "Ödeme sayfası bu sayfanın içinde gösterilemiyor: kendi güvenlik ayarları buna izin vermiyor.",
                "The payment page cannot be shown inside this page: its own security settings forbid it.",
            ),
            FrameUnknown => (
                "Ödeme sayfasının bu sayfanın içinde gösterilip gösterilemeyeceği anlaşılamadı.",
                "Whether the payment page may be shown inside this page could not be checked.",
            ),
            OpenedInWindow => ("Ödeme sayfası yeni bir pencerede açıldı.", "The payment page opened in a new window."),
        }
    }
}

/// The text in `locale`.
pub fn t(locale: Locale, text: Text) -> &'static str {
    let (tr, en) = text.pair();
    match locale {
        Locale::Tr => tr,
        Locale::En => en,
    }
}

/// The text in `locale` with its `{}` placeholders filled in order.
pub fn tf(locale: Locale, text: Text, args: &[&str]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut rest = t(locale, text);
    // The texts hold no brace but those of a placeholder.
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        out.push_str(args.next().copied().unwrap_or_default());
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

fn pick(locale: Locale, tr: &'static str, en: &'static str) -> &'static str {
    match locale {
        Locale::Tr => tr,
        Locale::En => en,
    }
}

/// Why typed amount is not accepted (codes of `InputError` and `RangeError`).
pub fn amount_error(locale: Locale, code: &str) -> String {
    use pientegra_shared::Amount;
    match code {
        "amount_empty" => pick(locale, "Bir tutar girin.", "Enter an amount.").into(),
        "amount_negative" => pick(locale, "Tutar eksi olamaz.", "The amount cannot be negative.").into(),
        "amount_too_many_decimals" => pick(
            locale,
            "Kuruş için virgülden sonra en çok iki basamak yazın.",
            "Use at most two digits after the decimal point.",
        )
        .into(),
        "amount_too_large" | "amount_above_max" => {
            format!("{} {}.", pick(locale, "En çok", "The most you can enter is"), Amount::MAX.format(locale))
        }
        "amount_below_min" => {
            format!("{} {}.", pick(locale, "En az", "The least you can enter is"), Amount::MIN.format(locale))
        }
        _ => pick(
            locale,
            "Tutar okunamadı; örneğin 1.500,50 gibi yazın.",
            "That is not an amount; write it like 1,500.50.",
        )
        .into(),
    }
}

/// Why an IBAN is not valid, in words.
pub fn iban_error(locale: Locale, err: &IbanError) -> String {
    match err {
        IbanError::Empty => pick(locale, "IBAN'ı girin.", "Enter the IBAN.").into(),
        IbanError::InvalidCharacter(c) => match locale {
            Locale::Tr => {
                format!("IBAN'da bu konumda “{c}” olamaz: iki harf, iki rakam, ardından harf ve rakamlar gelir.")
            }
            Locale::En => {
                format!("“{c}” cannot be there: an IBAN is two letters, two digits, then letters and digits.")
            }
        },
        IbanError::UnknownCountry(cc) => match locale {
            Locale::Tr => format!("“{cc}” IBAN kullanan bir ülkenin kodu değil."),
            Locale::En => format!("“{cc}” is not the code of a country that uses IBANs."),
        },
        IbanError::WrongLength { country, expected, actual } => match locale {
            Locale::Tr => format!("{country} IBAN'ı {expected} karakterdir; girilen {actual} karakter."),
            Locale::En => format!("A {country} IBAN has {expected} characters; this one has {actual}."),
        },
        IbanError::Checksum => pick(
            locale,
            "IBAN'ın kontrol basamakları tutmuyor; bir karakter yanlış yazılmış olabilir.",
            "The IBAN's check digits do not match; a character is probably mistyped.",
        )
        .into(),
    }
}

/// Why a holder name is not accepted.
pub fn holder_error(locale: Locale, err: &IdError) -> String {
    match err {
        IdError::Empty => pick(locale, "Hesap sahibinin adını girin.", "Enter the account holder's name.").into(),
        IdError::TooLong { max, .. } => match locale {
            Locale::Tr => format!("Ad en çok {max} karakter olabilir."),
            Locale::En => format!("The name can be at most {max} characters."),
        },
        _ => pick(
            locale,
            "Ad yalnızca harf, boşluk ve noktalama içerebilir.",
            "The name can only hold letters, spaces and punctuation.",
        )
        .into(),
    }
}

/// A failed call to the server, explained.
pub fn api_error(locale: Locale, failure: &ApiFailure) -> String {
    let code = failure.code();
    let (tr, en) = match code {
        // Whatever the server's code says about the token, the user reads the same.
        _ if failure.is_auth() => (
            "Oturumunuzun süresi doldu. Sayfayı yenileyip yeniden deneyin.",
            "Your session has expired. Reload the page and try again.",
        ),
        codes::AMOUNT_BELOW_MIN | codes::AMOUNT_ABOVE_MAX => return amount_error(locale, code),
        codes::INSUFFICIENT_FUNDS => {
            ("Bakiyeniz bu çekim için yetersiz.", "Your balance is not enough for this withdrawal.")
        }
        codes::INVALID_IBAN => (
            "IBAN geçerli değil. Lütfen kontrol edip yeniden deneyin.",
            "The IBAN is not valid. Please check it and try again.",
        ),
        codes::VALIDATION_FAILED => (
            "Girilen bilgiler kabul edilmedi. Lütfen kontrol edin.",
            "The details were not accepted. Please check them.",
        ),
        codes::RATE_LIMITED => (
            "Çok fazla deneme yapıldı. Biraz bekleyip yeniden deneyin.",
            "Too many attempts. Wait a moment and try again.",
        ),
        codes::PROVIDER_UNAVAILABLE | codes::PROVIDER_BUSY | codes::IDEMPOTENCY_KEY_IN_FLIGHT => (
            "Ödeme hizmetine şu anda ulaşılamıyor. Biraz sonra yeniden deneyin.",
            "The payment service cannot be reached right now. Try again in a moment.",
        ),
        codes::PROVIDER_REJECTED => {
            ("Ödeme hizmeti bu işlemi kabul etmedi.", "The payment service did not accept this request.")
        }
        codes::DEPOSIT_URL_NOT_ALLOWED => (
            "Ödeme sayfasının adresi güvenli değil; işlem durduruldu.",
            "The payment page address is not secure, so the deposit was stopped.",
        ),
        codes::NOT_FOUND => ("Kayıt bulunamadı.", "The record was not found."),
        "network" => (
            "Sunucuya ulaşılamadı. Bağlantınızı kontrol edip yeniden deneyin.",
            "The server could not be reached. Check your connection and try again.",
        ),
        _ => ("Bir sorun oluştu. Lütfen yeniden deneyin.", "Something went wrong. Please try again."),
    };
    pick(locale, tr, en).into()
}

/// A deposit status, short.
#[cfg(feature = "demo")]
pub fn intent_status(locale: Locale, status: pientegra_shared::status::IntentStatus) -> &'static str {
    use pientegra_shared::status::IntentStatus;
    match status {
        IntentStatus::Reserved => pick(locale, "Havale bekleniyor", "Awaiting transfer"),
        IntentStatus::PendingReview => pick(locale, "İnceleniyor", "Under review"),
        IntentStatus::Approved => pick(locale, "Onaylandı", "Approved"),
        IntentStatus::Rejected => pick(locale, "Reddedildi", "Rejected"),
        IntentStatus::AutoCancelled => pick(locale, "Süresi doldu", "Expired"),
        IntentStatus::LateArrival => pick(locale, "Geç ulaştı", "Late arrival"),
    }
}

/// A withdrawal status, short.
#[cfg(feature = "demo")]
pub fn withdrawal_status(locale: Locale, status: pientegra_shared::status::WithdrawalStatus) -> &'static str {
    use pientegra_shared::status::WithdrawalStatus;
    match status {
        WithdrawalStatus::PendingReview => pick(locale, "İnceleniyor", "Under review"),
        WithdrawalStatus::Approved => pick(locale, "Onaylandı", "Approved"),
        WithdrawalStatus::Sent => pick(locale, "Gönderildi", "Sent"),
        WithdrawalStatus::Rejected => pick(locale, "Reddedildi", "Rejected"),
        WithdrawalStatus::Returned => pick(locale, "İade edildi", "Returned"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_in_order() {
        assert_eq!(tf(Locale::En, Text::WithdrawalSummary, &["₺10.00", "R1"]), "Amount: ₺10.00, reference: R1.");
        assert_eq!(tf(Locale::Tr, Text::ReferenceIs, &["R1"]), "Referans: R1.");
    }

    #[test]
    fn known_server_codes_are_explained_in_their_own_words() {
        let failure = |code: &str| ApiFailure::Api { status: 400, code: code.to_owned() };
        for locale in [Locale::Tr, Locale::En] {
            let generic = api_error(locale, &failure("something_new"));
            let refused_token = ApiFailure::Api { status: 401, code: codes::TOKEN_EXPIRED.to_owned() };
            assert_ne!(api_error(locale, &refused_token), generic, "a refused token");
            for code in [
                codes::INSUFFICIENT_FUNDS,
                codes::INVALID_IBAN,
                codes::PROVIDER_UNAVAILABLE,
                codes::RATE_LIMITED,
                codes::DEPOSIT_URL_NOT_ALLOWED,
                codes::AMOUNT_BELOW_MIN,
            ] {
                assert_ne!(api_error(locale, &failure(code)), generic, "{code}");
            }
        }
    }
}
