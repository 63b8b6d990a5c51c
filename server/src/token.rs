//! Widget tokens and stream tickets. They live in `pientegra_shared::token`
//! (pure, so the fuzz targets reach them without the server's dependencies).

pub use pientegra_shared::token::{
    Claims, TICKET_TTL, Ticket, TicketClaims, TicketKey, TokenError, TokenKey, looks_like_ticket,
};
