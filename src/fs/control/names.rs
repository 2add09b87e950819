//! What a name in the control folder means: a site key, an editor/OS scratch name (kept in
//! memory, never sent anywhere), the generated `STATUS` file, a candidate link-file alias,
//! or something refused. Pure: no I/O.

use std::ffi::OsStr;

use crate::model::command::{validate_alias, MAX_ALIAS_BYTES};
use crate::model::keys::Key;

/// The generated, read-only table of every site and mirror.
pub const STATUS_NAME: &str = "STATUS";

/// What a directory-entry name in the control folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// 64 hex or 52 z-base32 characters (optionally with a `.url` extension).
    Key(Key),
    /// Editor and OS scratch files: dotfiles, `*~`, `*.swp`/`.swo`/`.swx`, `4913`, `._*`,
    /// `#*#`, `.#*`. They live in memory only.
    Scratch,
    /// `STATUS`.
    Reserved,
    /// Any other plain name: a link file whose content names the site. `.url` is stripped.
    Alias(String),
    /// Not usable here; the string says why and what to do instead.
    Invalid(String),
}

/// Classifies a name typed into the control folder.
pub fn classify(name: &OsStr) -> Name {
    let Some(name) = name.to_str() else {
        return Name::Invalid(format!(
            "{} is not valid UTF-8: use a plain name such as `blog`",
            name.to_string_lossy()
        ));
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Name::Invalid(format!("{name:?} is not a plain file name"));
    }
    if name.chars().any(char::is_control) {
        return Name::Invalid(format!(
            "{name:?} contains control characters: use a plain name such as `blog`"
        ));
    }
    if is_scratch(name) {
        return Name::Scratch;
    }
    if name == STATUS_NAME {
        return Name::Reserved;
    }
    let stem = strip_url(name);
    if let Some(key) = as_key(stem) {
        return Name::Key(key);
    }
    if stem.is_empty() {
        return Name::Invalid(format!(
            "{name:?} has nothing before `.url`: name it `blog.url`"
        ));
    }
    if stem.len() > MAX_ALIAS_BYTES {
        return Name::Invalid(format!(
            "{}… is {} bytes long; aliases are at most {MAX_ALIAS_BYTES} bytes: pick a shorter name",
            stem.chars().take(20).collect::<String>(),
            stem.len()
        ));
    }
    if stem == STATUS_NAME || is_scratch(stem) {
        return Name::Invalid(format!(
            "{name:?} would be the alias {stem:?}, which is reserved"
        ));
    }
    match validate_alias(stem) {
        Ok(()) => Name::Alias(stem.to_string()),
        Err(why) => Name::Invalid(why),
    }
}

/// A key spelled exactly (no surrounding spaces, no link prefix).
fn as_key(s: &str) -> Option<Key> {
    if (s.len() == 64 || s.len() == 52) && s.trim() == s {
        Key::parse(s).ok()
    } else {
        None
    }
}

fn strip_url(name: &str) -> &str {
    let n = name.len();
    if n > 4 && name.is_char_boundary(n - 4) && name[n - 4..].eq_ignore_ascii_case(".url") {
        &name[..n - 4]
    } else {
        name
    }
}

fn is_scratch(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".swp", ".swo", ".swx"].iter().any(|e| name.ends_with(e))
        || name == "4913"
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn c(s: &str) -> Name {
        classify(OsStr::new(s))
    }

    #[test]
    fn keys_in_both_spellings() {
        let k = Key([0x5a; 32]);
        assert_eq!(c(&k.to_hex()), Name::Key(k));
        assert_eq!(c(&k.to_hex().to_uppercase()), Name::Key(k));
        assert_eq!(c(&k.to_z32()), Name::Key(k));
        assert_eq!(c(&format!("{}.url", k.to_hex())), Name::Key(k));
        // One character short is an ordinary name, not a key.
        assert_eq!(
            c(&k.to_hex()[1..]),
            Name::Alias(k.to_hex()[1..].to_string())
        );
    }

    #[test]
    fn scratch_names() {
        for s in [
            ".blog.swp",
            ".x",
            ".#blog",
            "blog~",
            "blog.swp",
            "blog.swo",
            "blog.swx",
            "4913",
            "._blog",
            "#blog#",
            ".DS_Store",
            ".hidden",
            ".url",
        ] {
            assert_eq!(c(s), Name::Scratch, "{s}");
        }
        assert_ne!(c("#"), Name::Scratch);
    }

    #[test]
    fn reserved_and_aliases() {
        assert_eq!(c("STATUS"), Name::Reserved);
        assert_eq!(c("status"), Name::Alias("status".into()));
        assert_eq!(c("blog"), Name::Alias("blog".into()));
        assert_eq!(c("blog.url"), Name::Alias("blog".into()));
        assert_eq!(c("blog.URL"), Name::Alias("blog".into()));
        assert_eq!(c("my blog (2).txt"), Name::Alias("my blog (2).txt".into()));
        assert_eq!(c("café"), Name::Alias("café".into()));
    }

    #[test]
    fn invalid_names() {
        for s in [
            "",
            "STATUS.url",
            "a\nb",
            "tab\there",
            &"x".repeat(201),
            "é.url\u{7}",
        ] {
            assert!(matches!(c(s), Name::Invalid(_)), "{s:?} → {:?}", c(s));
        }
        assert!(matches!(
            classify(OsStr::from_bytes(b"bad\xff")),
            Name::Invalid(_)
        ));
        assert_eq!(c(&"x".repeat(200)), Name::Alias("x".repeat(200)));
        // Every refusal explains itself.
        if let Name::Invalid(why) = c(&"y".repeat(300)) {
            assert!(why.contains("at most 200 bytes"), "{why}");
        }
    }
}
