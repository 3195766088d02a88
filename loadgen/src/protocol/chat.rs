//! The chat profile (docs/protocol.md): log in with `GET <path>?user=NAME` (the token in
//! `Authorization: Bearer` or `&token=`), send the message as the frame, receive
//! `<message> -- FROM <NAME>`. Its deliveries are classified by
//! [`crate::checks::delivery::classify_text`], which also checks the name; nothing here
//! runs per message.

use super::terms::Who;
use crate::credentials::TokenPlacement;
use crate::target::encode_name;

/// `<path>?user=NAME`, and `&token=…` when the token goes in the query.
pub fn request_target(path: &str, who: Who<'_>) -> String {
    let mut target = format!("{path}?user={}", encode_name(who.user));
    if let (Some(token), TokenPlacement::Query) = (who.token, who.token_in) {
        target.push_str("&token=");
        target.push_str(&encode_name(token));
    }
    target
}
