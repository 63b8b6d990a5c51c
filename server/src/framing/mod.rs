//! Whether a partner page may show the hosted deposit page in a frame
//! (the widget's iframe mode).

pub mod policy;
