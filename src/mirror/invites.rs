//! The mirror's invite book (`DATA/invites.json`): one record per invite made, holding the
//! secret's hash, the expiry and who used it. Redeeming is one-time: the first laptop to
//! present a valid secret before the expiry is let in, every later attempt is refused with
//! the reason. `dat-mirror invite` (any process) and the running mirror (when a laptop
//! pairs) both change the book, under an exclusive lock on `DATA/invites.lock`.
//!
//! [`InviteBook`] is the pure part (decisions, no I/O); [`with_book`] is the locked
//! read-modify-write of the file.

use std::fs::OpenOptions;
use std::os::unix::io::AsRawFd;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::host::state::StateFile;
use crate::host::DataDir;
use crate::model::invite::{secret_hash, Invite};
use crate::model::keys::Key;

/// Records expired this long ago (and used ones this old) are dropped from the book.
const FORGET_AFTER_SECS: u64 = 30 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// Hex of [`secret_hash`].
    pub hash: String,
    pub created: u64,
    pub expires: u64,
    pub used_by: Option<Key>,
    pub used_at: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteBook {
    pub invites: Vec<InviteRecord>,
}

/// Why a pairing attempt was refused. The texts go back to the laptop's user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("this mirror does not know the invite (it was never made here, or it was forged); run `dat-mirror invite` on the mirror for a new one")]
    Unknown,
    #[error("the invite expired {ago} ago; run `dat-mirror invite` on the mirror for a new one")]
    Expired { ago: String },
    #[error("the invite was already used (by {by}); each invite pairs one laptop — run `dat-mirror invite` on the mirror for a new one")]
    Used { by: String },
}

impl InviteBook {
    /// Records a new invite.
    pub fn add(&mut self, invite: &Invite, now: u64) {
        self.invites.push(InviteRecord {
            hash: hex::encode(secret_hash(&invite.mirror, &invite.secret)),
            created: now,
            expires: invite.expires,
            used_by: None,
            used_at: None,
        });
    }

    /// Lets `laptop` in with `secret` if an unused, unexpired invite has it. A laptop that
    /// presents the secret it already used again is let in again (its first answer may have
    /// been lost), without using another invite.
    pub fn redeem(
        &mut self,
        mirror: &Key,
        secret: &[u8; 16],
        laptop: Key,
        now: u64,
    ) -> Result<(), RedeemError> {
        let hash = hex::encode(secret_hash(mirror, secret));
        let rec = self
            .invites
            .iter_mut()
            .find(|r| r.hash == hash)
            .ok_or(RedeemError::Unknown)?;
        match rec.used_by {
            Some(by) if by == laptop => return Ok(()),
            Some(by) => return Err(RedeemError::Used { by: by.short() }),
            None => {}
        }
        if now >= rec.expires {
            return Err(RedeemError::Expired {
                ago: human_secs(now - rec.expires),
            });
        }
        rec.used_by = Some(laptop);
        rec.used_at = Some(now);
        Ok(())
    }

    /// Drops records nobody can use any more and nobody needs to be told about.
    pub fn prune(&mut self, now: u64) {
        self.invites.retain(|r| {
            let end = r.used_at.unwrap_or(r.expires);
            now < end.saturating_add(FORGET_AFTER_SECS)
        });
    }

    /// Invites that can still be used.
    pub fn open_invites(&self, now: u64) -> usize {
        self.invites
            .iter()
            .filter(|r| r.used_by.is_none() && now < r.expires)
            .count()
    }
}

fn human_secs(s: u64) -> String {
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn book_file(data: &DataDir) -> StateFile {
    StateFile::new(
        data.invites(),
        "open invites are lost, paired laptops stay paired",
        // An older book could let a used invite in again.
        false,
    )
}

/// Runs `f` on the book in `data`, under the book's lock, and saves it if `f` returns Ok.
pub fn with_book<T>(
    data: &DataDir,
    f: impl FnOnce(&mut InviteBook) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    data.create_private()?;
    let lock_path = data.invites_lock();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", lock_path.display()));
    }
    let file = book_file(data);
    let mut book: InviteBook = file.load()?;
    let out = f(&mut book)?;
    file.save(&book)?;
    drop(lock);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: Key = Key([9; 32]);
    const LAPTOP: Key = Key([1; 32]);
    const OTHER: Key = Key([2; 32]);

    fn book_with(expires: u64) -> (InviteBook, Invite) {
        let inv = Invite::new(MIRROR, [3; 16], expires, vec![]);
        let mut book = InviteBook::default();
        book.add(&inv, 100);
        (book, inv)
    }

    #[test]
    fn an_invite_pairs_one_laptop_once() {
        let (mut book, inv) = book_with(1000);
        assert_eq!(book.open_invites(500), 1);
        book.redeem(&MIRROR, &inv.secret, LAPTOP, 500).unwrap();
        assert_eq!(book.open_invites(500), 0);
        // The same laptop again (a lost answer): fine, nothing more used.
        book.redeem(&MIRROR, &inv.secret, LAPTOP, 600).unwrap();
        // Anyone else: refused, and told why.
        assert!(matches!(
            book.redeem(&MIRROR, &inv.secret, OTHER, 600),
            Err(RedeemError::Used { .. })
        ));
    }

    #[test]
    fn expired_forged_and_foreign_invites_are_refused() {
        let (mut book, inv) = book_with(1000);
        let before = book.clone();
        assert!(matches!(
            book.redeem(&MIRROR, &inv.secret, LAPTOP, 1000),
            Err(RedeemError::Expired { .. })
        ));
        assert_eq!(
            book.redeem(&MIRROR, &[0; 16], LAPTOP, 500),
            Err(RedeemError::Unknown)
        );
        // A valid secret hashed for another mirror is not this mirror's invite.
        assert_eq!(
            book.redeem(&OTHER, &inv.secret, LAPTOP, 500),
            Err(RedeemError::Unknown)
        );
        assert_eq!(book, before, "refusals change nothing");
    }

    #[test]
    fn old_records_are_pruned() {
        let (mut book, inv) = book_with(1000);
        book.redeem(&MIRROR, &inv.secret, LAPTOP, 500).unwrap();
        book.add(&Invite::new(MIRROR, [3; 16], 2000, vec![]), 100);
        book.prune(1000 + FORGET_AFTER_SECS);
        assert_eq!(book.invites.len(), 1);
        assert_eq!(book.invites[0].expires, 2000);
    }

    #[test]
    fn the_file_round_trips_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let inv = Invite::new(MIRROR, [3; 16], u64::MAX, vec![]);
        with_book(&data, |b| {
            b.add(&inv, 1);
            Ok(())
        })
        .unwrap();
        let r = with_book(&data, |b| {
            b.redeem(&MIRROR, &inv.secret, LAPTOP, 2)
                .map_err(anyhow::Error::from)
        });
        assert!(r.is_ok());
        let again = with_book(&data, |b| {
            b.redeem(&MIRROR, &inv.secret, OTHER, 3)
                .map_err(anyhow::Error::from)
        });
        assert!(again.unwrap_err().to_string().contains("already used"));
    }
}

#[cfg(test)]
mod damaged_book {
    use super::*;

    #[test]
    fn a_zero_length_book_is_named_and_not_replaced_by_an_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let inv = Invite::new(Key([9; 32]), [3; 16], u64::MAX, vec![]);
        with_book(&data, |b| {
            b.add(&inv, 1);
            Ok(())
        })
        .unwrap();
        with_book(&data, |b| {
            b.redeem(&Key([9; 32]), &inv.secret, Key([1; 32]), 2)
                .map_err(anyhow::Error::from)
        })
        .unwrap();
        std::fs::write(data.invites(), b"").unwrap();
        let e = with_book(&data, |_| Ok(())).unwrap_err().to_string();
        assert!(
            e.contains("invites.json is unreadable (it is empty)"),
            "{e}"
        );
        assert!(e.contains("invites.json.last-good"), "{e}");
    }
}
