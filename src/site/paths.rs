//! Site paths and the rules that keep hostile site content harmless: only valid single path
//! components become names ([`valid_name`]), paths are bounded ([`MAX_PATH`]), and symlinks
//! resolve inside the site ([`link_destination`], [`link_target`]) — the one symlink rule of
//! the HTTP gateway and the site tree.

use crate::drive::normalize_path;

/// Longest name shown (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Longest site path shown (bytes, like `PATH_MAX`); deeper entries are left out, which
/// bounds the memory a hostile, very deep site can make the tree use.
pub const MAX_PATH: usize = 4096;
/// Is `name` (bytes from a site or from the kernel) a valid single path component?
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// `dir` + `/` + `name` (site paths are absolute, `"/"` is the site root), or `None` when
/// the result would be longer than [`MAX_PATH`].
pub fn child_path(dir: &str, name: &str) -> Option<String> {
    let path = if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    };
    (path.len() <= MAX_PATH).then_some(path)
}

/// The parent of a site path (`"/"` for top-level entries and for the root itself).
pub fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Where an entry at site path `link` with `linkname` points, as an absolute, normalized site
/// path: hyperdrive resolves a linkname against the link's directory, and an absolute one
/// against the drive root, never above it (`unix-path-resolve`), so `/etc/passwd` in a site
/// means `<site>/etc/passwd` and `../../..` stops at the site root. `None` for an empty
/// linkname, one with a NUL, or one longer than [`MAX_PATH`]. The HTTP gateway follows links
/// to this path; the site tree shows it as a relative target ([`link_target`]).
pub fn link_destination(link: &str, linkname: &str) -> Option<String> {
    if linkname.is_empty() || linkname.contains('\0') || linkname.len() > MAX_PATH {
        return None;
    }
    Some(if linkname.starts_with('/') {
        normalize_path(linkname)
    } else {
        normalize_path(&format!("{}/{linkname}", parent_path(link)))
    })
}

/// The symlink target to show for an entry at site path `link` whose `linkname` is
/// `linkname`, as a path relative to the link's directory that stays inside the site: the
/// place [`link_destination`] names. `None` when that is `None` or the result is too long.
pub fn link_target(link: &str, linkname: &str) -> Option<String> {
    let dir = parent_path(link);
    let absolute = link_destination(link, linkname)?;
    let from: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = absolute.split('/').filter(|s| !s.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend_from_slice(&to[common..]);
    let target = if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    };
    (target.len() <= MAX_PATH).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "index.html", "with space", "ünïcode", "..a", "a\nb"] {
            assert!(valid_name(ok.as_bytes()), "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!valid_name(bad.as_bytes()), "{bad:?}");
        }
        assert!(valid_name(&[b'x'; 255]));
        assert!(!valid_name(&[b'x'; 256]));
        assert_eq!(child_path("/", "a").as_deref(), Some("/a"));
        assert_eq!(child_path("/a", "b").as_deref(), Some("/a/b"));
        assert_eq!(child_path(&"/x".repeat(2048), "b"), None);
        assert_eq!(parent_path("/a"), "/");
        assert_eq!(parent_path("/a/b/c"), "/a/b");
        assert_eq!(parent_path("/"), "/");
    }

    #[test]
    fn symlink_targets_stay_in_the_site() {
        assert_eq!(link_target("/a/l", "b").as_deref(), Some("b"));
        assert_eq!(link_target("/a/l", "../b").as_deref(), Some("../b"));
        assert_eq!(
            link_target("/a/l", "../../../../etc/passwd").as_deref(),
            Some("../etc/passwd")
        );
        assert_eq!(
            link_target("/a/b/l", "/etc/passwd").as_deref(),
            Some("../../etc/passwd")
        );
        assert_eq!(link_target("/l", "/").as_deref(), Some("."));
        assert_eq!(link_target("/a/l", "/a/x/./y/").as_deref(), Some("x/y"));
        assert_eq!(link_target("/a/l", ""), None);
        assert_eq!(link_target("/a/l", "x\0y"), None);
        assert_eq!(link_target("/l", &"y".repeat(MAX_PATH + 1)), None);
    }
    #[test]
    fn links_resolve_inside_the_site() {
        assert_eq!(link_destination("/a/l", "b").as_deref(), Some("/a/b"));
        assert_eq!(link_destination("/l", "../../x").as_deref(), Some("/x"));
        assert_eq!(
            link_destination("/a/l", "/etc/passwd").as_deref(),
            Some("/etc/passwd")
        );
        assert_eq!(link_destination("/a/l", ""), None);
    }
}
