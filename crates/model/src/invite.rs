//! Invite codes: how a laptop learns, from one string a person copies, which mirror to pair
//! with, how to reach it, and the one-time secret that proves the mirror's owner let it in.
//!
//! A code is `dmi1` + z-base32 of a postcard record (mirror id, 16-byte secret, expiry,
//! up to [`MAX_ADDRS`] direct addresses) followed by a 4-byte BLAKE2b checksum, so a code
//! damaged in copying is told apart from a forged or unknown one. The mirror keeps only a
//! hash of each secret ([`secret_hash`]). No I/O here.

use std::net::SocketAddr;

use blake2::digest::consts::U32;
use blake2::digest::Mac;
use serde::{Deserialize, Serialize};

use super::keys::{z32_decode_vec, z32_encode, Key};

/// Every invite code starts with this (version 1 of the format).
pub const PREFIX: &str = "dmi1";
/// Direct addresses carried in a code (the rest is found by discovery).
pub const MAX_ADDRS: usize = 4;
/// Longest code accepted when parsing (a code with four IPv6 addresses is ~250 characters).
const MAX_CODE_LEN: usize = 600;
const CHECKSUM_LEN: usize = 4;

/// What an invite code carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The mirror's node id (its status-log key).
    pub mirror: Key,
    /// The one-time secret; the mirror stores only its hash.
    pub secret: [u8; 16],
    /// Unix seconds after which the mirror refuses it.
    pub expires: u64,
    /// Where the mirror listened when the code was made (may be empty).
    pub addrs: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("this is not a dat-mirror invite code (they start with `{PREFIX}`); run `dat-mirror invite` on the mirror to get one")]
    NotAnInvite,
    #[error("the invite code is damaged (a character is wrong, missing or extra); copy it again in full")]
    Damaged,
    #[error("the invite code is too long to be a dat-mirror invite")]
    TooLong,
}

impl Invite {
    /// A new invite for `mirror` with a fresh random `secret` (the caller draws it: this
    /// crate has no source of randomness), valid until `expires` (unix seconds).
    pub fn new(mirror: Key, secret: [u8; 16], expires: u64, mut addrs: Vec<SocketAddr>) -> Invite {
        addrs.truncate(MAX_ADDRS);
        Invite {
            mirror,
            secret,
            expires,
            addrs,
        }
    }

    /// The code to show a person.
    pub fn encode(&self) -> String {
        let mut bytes = postcard::to_stdvec(self).expect("an invite always serializes");
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        format!("{PREFIX}{}", z32_encode(&bytes))
    }

    /// Parses a code (surrounding white space and a `dat-mirror pair` prefix are ignored;
    /// case does not matter).
    pub fn decode(code: &str) -> Result<Invite, InviteError> {
        let code = code.trim();
        if code.len() > MAX_CODE_LEN {
            return Err(InviteError::TooLong);
        }
        let lower = code.to_ascii_lowercase();
        let body = lower.strip_prefix(PREFIX).ok_or(InviteError::NotAnInvite)?;
        let bytes = z32_decode_vec(body).ok_or(InviteError::Damaged)?;
        if bytes.len() <= CHECKSUM_LEN {
            return Err(InviteError::Damaged);
        }
        let (record, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if checksum(record) != sum {
            return Err(InviteError::Damaged);
        }
        let (invite, rest): (Invite, &[u8]) =
            postcard::take_from_bytes(record).map_err(|_| InviteError::Damaged)?;
        if !rest.is_empty() || invite.addrs.len() > MAX_ADDRS {
            return Err(InviteError::Damaged);
        }
        Ok(invite)
    }

    pub fn is_expired(&self, now_secs: u64) -> bool {
        now_secs >= self.expires
    }
}

/// What the mirror stores for a secret: BLAKE2b-256 keyed by the mirror id.
pub fn secret_hash(mirror: &Key, secret: &[u8; 16]) -> [u8; 32] {
    let mut mac = blake2::Blake2bMac::<U32>::new_from_slice(mirror.as_bytes())
        .expect("a 32-byte key is valid for BLAKE2b");
    mac.update(b"dat-mirror/invite/v1");
    mac.update(secret);
    mac.finalize().into_bytes().into()
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    use blake2::Digest;
    let full = blake2::Blake2b::<U32>::new()
        .chain_update(b"dat-mirror/invite-checksum")
        .chain_update(bytes)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&full[..CHECKSUM_LEN]);
    out
}

/// Parses a duration like `30m`, `1h`, `2d`, `90s` (for `invite --expires`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 30m, 1h or 7d"))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" | "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("'{s}' is not a duration like 30m, 1h or 7d")),
    };
    if secs == 0 {
        return Err("an invite that expires at once cannot be used; give e.g. 1h".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Invite {
        Invite::new(
            Key([7; 32]),
            [9; 16],
            1_900_000_000,
            vec![
                "192.168.1.20:7070".parse().unwrap(),
                "[fe80::1]:7070".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn round_trips_and_ignores_case_and_space() {
        let inv = sample();
        let code = inv.encode();
        assert!(code.starts_with(PREFIX));
        assert_eq!(Invite::decode(&code).unwrap(), inv);
        assert_eq!(
            Invite::decode(&format!("  {}\n", code.to_uppercase())).unwrap(),
            inv
        );
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let code = sample().encode();
        let alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769";
        for i in PREFIX.len()..code.len() {
            let orig = code.as_bytes()[i] as char;
            let repl = alphabet.chars().find(|&c| c != orig).unwrap();
            let mut bad = code.clone();
            bad.replace_range(i..i + 1, &repl.to_string());
            assert!(Invite::decode(&bad).is_err(), "change at {i} accepted");
        }
        assert_eq!(
            Invite::decode(&code[..code.len() - 1]),
            Err(InviteError::Damaged)
        );
        assert_eq!(
            Invite::decode(&format!("{code}y")),
            Err(InviteError::Damaged)
        );
    }

    #[test]
    fn garbage_is_refused_with_the_right_error() {
        assert_eq!(Invite::decode("hello"), Err(InviteError::NotAnInvite));
        assert_eq!(Invite::decode(""), Err(InviteError::NotAnInvite));
        assert_eq!(Invite::decode("dmi1"), Err(InviteError::Damaged));
        assert_eq!(Invite::decode("dmi1!!!!"), Err(InviteError::Damaged));
        assert_eq!(
            Invite::decode(&format!("dmi1{}", "y".repeat(700))),
            Err(InviteError::TooLong)
        );
        assert_eq!(Invite::decode("dmi1yyyyyyyyyy"), Err(InviteError::Damaged));
    }

    #[test]
    fn addresses_are_capped() {
        let addrs = (0..10)
            .map(|i| format!("10.0.0.{i}:7070").parse().unwrap())
            .collect();
        let inv = Invite::new(Key([1; 32]), [1; 16], 10, addrs);
        assert_eq!(inv.addrs.len(), MAX_ADDRS);
        assert_eq!(Invite::decode(&inv.encode()).unwrap(), inv);
    }

    #[test]
    fn hashes_depend_on_the_mirror() {
        // That two invites get different secrets is tested where secrets are drawn
        // (`mirror::laptops::make_invite`).
        let a = sample();
        assert_ne!(
            secret_hash(&Key([1; 32]), &a.secret),
            secret_hash(&Key([2; 32]), &a.secret)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }
}
