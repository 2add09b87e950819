//! Tests of the status view fold and its renderers.
//! (Over 600 lines: one table-like test per state transition of the fold.)

use super::*;
use StatusEvent as E;

const ME: Key = Key([1; 32]);
const M1: Key = Key([0xa1; 32]);
const M2: Key = Key([0xa2; 32]);
const A: Key = Key([0xaa; 32]);
const B: Key = Key([0xbb; 32]);

fn mirror(k: Key, alias: Option<&str>) -> Result<Command, CommandError> {
    Ok(Command::Mirror {
        key: k,
        alias: alias.map(String::from),
    })
}
fn unmirror(k: Key) -> Result<Command, CommandError> {
    Ok(Command::Unmirror { key: k })
}
fn ack(at: u64, seq: u64) -> StatusEntry {
    StatusEntry::new(at, E::Ack { log: ME, seq })
}
fn progress(at: u64, k: Key, bytes: u64, total: u64) -> StatusEntry {
    let event = E::Progress {
        key: k,
        version: 3,
        blocks: 1,
        total_blocks: 4,
        bytes,
        total_bytes: total,
        peers: 2,
    };
    StatusEntry::new(at, event)
}
fn mirrored(at: u64, k: Key, version: u64, bytes: u64) -> StatusEntry {
    StatusEntry::new(
        at,
        E::Mirrored {
            key: k,
            version,
            blocks: 7,
            bytes,
            peers: 3,
        },
    )
}
fn input(m: Key, status: Vec<StatusEntry>) -> MirrorInput {
    MirrorInput {
        mirror: m,
        status,
        online: true,
        last_seen_ms: Some(5),
    }
}
fn one(cmds: &[Result<Command, CommandError>], status: Vec<StatusEntry>) -> StatusView {
    fold(ME, cmds, &[input(M1, status)], 1_000_000)
}
fn state(v: &StatusView, k: Key) -> String {
    v.site(&k).expect("site shown").state.to_string()
}

#[test]
fn queued_then_delivered_then_syncing_then_mirrored() {
    let cmds = [mirror(A, None)];
    assert_eq!(state(&one(&cmds, vec![]), A), "queued");
    assert_eq!(
        state(&fold(ME, &cmds, &[], 0), A),
        "queued",
        "no mirror paired"
    );
    assert_eq!(state(&one(&cmds, vec![ack(1, 0)]), A), "delivered");
    assert_eq!(
        state(&one(&cmds, vec![ack(1, 0), progress(2, A, 25, 100)]), A),
        "syncing 25%"
    );
    let v = one(
        &cmds,
        vec![ack(1, 0), progress(2, A, 25, 100), mirrored(3, A, 9, 100)],
    );
    assert_eq!(state(&v, A), "mirrored v9");
    let s = v.site(&A).unwrap();
    assert_eq!(
        (s.version, s.bytes, s.peers, s.blocks, s.last_sync_ms),
        (Some(9), 100, Some(3), Some(7), Some(3))
    );
}

#[test]
fn progress_uses_blocks_when_bytes_total_is_zero() {
    let cmds = [mirror(A, None)];
    let p = StatusEntry::new(
        2,
        E::Progress {
            key: A,
            version: 1,
            blocks: 3,
            total_blocks: 4,
            bytes: 0,
            total_bytes: 0,
            peers: 0,
        },
    );
    assert_eq!(state(&one(&cmds, vec![ack(1, 0), p]), A), "syncing 75%");
    let p = StatusEntry::new(
        2,
        E::Progress {
            key: A,
            version: 1,
            blocks: 0,
            total_blocks: 0,
            bytes: 0,
            total_bytes: 0,
            peers: 0,
        },
    );
    assert_eq!(state(&one(&cmds, vec![ack(1, 0), p]), A), "syncing 0%");
}

#[test]
fn errors_and_rejections() {
    let cmds = [mirror(A, None)];
    let err = StatusEntry::new(
        4,
        E::Error {
            key: A,
            reason: "disk full".into(),
        },
    );
    let v = one(&cmds, vec![ack(1, 0), err]);
    assert_eq!(state(&v, A), "error: disk full");
    assert_eq!(v.site(&A).unwrap().last_error.as_deref(), Some("disk full"));
    let rej = StatusEntry::new(
        2,
        E::Rejected {
            log: ME,
            seq: 0,
            reason: "bad alias".into(),
        },
    );
    let v = one(&cmds, vec![rej]);
    assert_eq!(state(&v, A), "error: rejected: bad alias");
    assert_eq!(
        v.site(&A).unwrap().last_error.as_deref(),
        Some("rejected: bad alias")
    );
    // A rejection of another seq or another log is not about this command.
    let other = StatusEntry::new(
        2,
        E::Rejected {
            log: M2,
            seq: 0,
            reason: "x".into(),
        },
    );
    assert_eq!(state(&one(&cmds, vec![other]), A), "queued");
}

#[test]
fn malformed_commands_are_ignored_but_keep_their_seq() {
    let cmds = [
        Err(CommandError::NotJson("x".into())),
        mirror(A, Some("blog")),
        Err(CommandError::UnknownVersion(7)),
    ];
    let v = one(&cmds, vec![ack(1, 0)]);
    assert_eq!(v.sites.len(), 1);
    assert_eq!(
        state(&v, A),
        "queued",
        "ack of seq 0 is not an ack of seq 1"
    );
    assert_eq!(v.site(&A).unwrap().seq, 1);
    assert_eq!(state(&one(&cmds, vec![ack(1, 2)]), A), "delivered");
}

#[test]
fn unmirror_is_removing_until_every_mirror_acked() {
    let cmds = [mirror(A, Some("blog")), unmirror(A)];
    let v = fold(
        ME,
        &cmds,
        &[
            input(M1, vec![ack(1, 0), mirrored(2, A, 4, 10)]),
            input(M2, vec![]),
        ],
        9,
    );
    let s = v.site(&A).unwrap();
    assert_eq!(s.state.to_string(), "removing");
    assert!(s.removing);
    assert_eq!(s.alias.as_deref(), Some("blog"));
    let v = fold(
        ME,
        &cmds,
        &[input(M1, vec![ack(1, 1)]), input(M2, vec![])],
        9,
    );
    let per: Vec<String> = v
        .site(&A)
        .unwrap()
        .per_mirror
        .iter()
        .map(|p| p.state.to_string())
        .collect();
    assert_eq!(per, ["removed", "removing"]);
    let v = fold(
        ME,
        &cmds,
        &[input(M1, vec![ack(1, 1)]), input(M2, vec![ack(3, 1)])],
        9,
    );
    assert!(v.sites.is_empty());
    let removed = StatusEntry::new(4, E::Removed { key: A });
    assert!(one(&cmds, vec![ack(1, 1), removed]).sites.is_empty());
    assert!(
        fold(ME, &cmds, &[], 0).sites.is_empty(),
        "nobody to wait for"
    );
}

#[test]
fn out_of_order_acks() {
    // Mirror 1 acked seq 2 before it wrote an ack for seq 0: both count.
    let cmds = [mirror(A, None), mirror(B, None), unmirror(B)];
    let v = one(&cmds, vec![ack(1, 2), ack(2, 0)]);
    assert_eq!(state(&v, A), "delivered");
    assert!(v.site(&B).is_none());
    // Progress after the first qualifying ack is what counts.
    let v = one(&cmds, vec![ack(1, 2), progress(2, A, 5, 10), ack(3, 0)]);
    assert_eq!(state(&v, A), "syncing 50%");
    assert_eq!(v.mirrors[0].acked, Some(2));
}

#[test]
fn remirror_after_removal_starts_fresh() {
    let cmds = [mirror(A, None), unmirror(A), mirror(A, Some("again"))];
    let old = vec![
        ack(1, 0),
        mirrored(2, A, 4, 10),
        ack(3, 1),
        StatusEntry::new(4, E::Removed { key: A }),
    ];
    let v = one(&cmds, old.clone());
    let s = v.site(&A).unwrap();
    assert_eq!(
        (s.state.to_string(), s.bytes, s.version),
        ("queued".into(), 0, None)
    );
    let mut acked = old;
    acked.push(ack(5, 2));
    assert_eq!(state(&one(&cmds, acked), A), "delivered");
}

#[test]
fn earlier_progress_carries_over_an_alias_change() {
    let cmds = [mirror(A, None), mirror(A, Some("blog"))];
    let v = one(&cmds, vec![ack(1, 0), mirrored(2, A, 4, 10), ack(3, 1)]);
    assert_eq!(state(&v, A), "mirrored v4");
    assert_eq!(v.site(&A).unwrap().alias.as_deref(), Some("blog"));
    // Until acked, the re-sent command is queued but the data is still shown.
    let v = one(&cmds, vec![ack(1, 0), mirrored(2, A, 4, 10)]);
    assert_eq!(
        (state(&v, A), v.site(&A).unwrap().bytes),
        ("queued".into(), 10)
    );
}

#[test]
fn alias_comes_from_the_latest_mirror_command() {
    let cmds = [mirror(A, Some("old")), mirror(A, Some("new"))];
    assert_eq!(
        one(&cmds, vec![]).site(&A).unwrap().alias.as_deref(),
        Some("new")
    );
    let cmds = [mirror(A, Some("old")), mirror(A, None)];
    assert_eq!(one(&cmds, vec![]).site(&A).unwrap().alias, None);
}

#[test]
fn several_mirrors_show_the_most_advanced() {
    let cmds = [mirror(A, None)];
    let err = StatusEntry::new(
        3,
        E::Error {
            key: A,
            reason: "no peers".into(),
        },
    );
    let online = StatusEntry::new(
        0,
        E::Online {
            http: Some("http://pi:8080/".into()),
        },
    );
    let m1 = input(M1, vec![ack(1, 0), progress(2, A, 50, 100), err.clone()]);
    let m2 = input(M2, vec![online, ack(1, 0), mirrored(4, A, 6, 100)]);
    let v = fold(ME, &cmds, &[m1.clone(), m2], 0);
    let s = v.site(&A).unwrap();
    assert_eq!(s.state.to_string(), "mirrored v6");
    assert_eq!(s.per_mirror[0].state.to_string(), "error: no peers");
    assert_eq!(
        s.http.as_deref(),
        Some(format!("http://pi:8080/{}/", A.to_hex()).as_str())
    );
    assert_eq!(s.last_error.as_deref(), Some("no peers"));
    assert_eq!(
        (s.bytes, s.version, s.last_sync_ms),
        (100, Some(6), Some(4))
    );
    let v = fold(ME, &cmds, &[m1, input(M2, vec![])], 0);
    assert_eq!(state(&v, A), "queued", "queued beats an error");
    let v = fold(
        ME,
        &cmds,
        &[
            input(M1, vec![ack(1, 0), err]),
            input(M2, vec![ack(1, 0), progress(2, A, 1, 4)]),
        ],
        0,
    );
    assert_eq!(state(&v, A), "syncing 25%");
}

#[test]
fn http_comes_from_the_latest_online() {
    let cmds = [mirror(A, None)];
    let on = |http: Option<&str>| {
        StatusEntry::new(
            0,
            E::Online {
                http: http.map(String::from),
            },
        )
    };
    let v = one(&cmds, vec![on(Some("http://a")), on(Some("http://b"))]);
    assert_eq!(
        v.site(&A).unwrap().http,
        Some(format!("http://b/{}/", A.to_hex()))
    );
    assert_eq!(v.mirrors[0].http.as_deref(), Some("http://b"));
    assert_eq!(
        one(&cmds, vec![on(Some("http://a")), on(None)])
            .site(&A)
            .unwrap()
            .http,
        None
    );
}

#[test]
fn removed_before_the_ack_means_delivered() {
    let cmds = [mirror(A, None)];
    let removed = StatusEntry::new(1, E::Removed { key: A });
    assert_eq!(state(&one(&cmds, vec![removed, ack(2, 0)]), A), "delivered");
}

#[test]
fn renderers() {
    let cmds = [mirror(A, Some("blog"))];
    let online = StatusEntry::new(
        0,
        E::Online {
            http: Some("http://pi:8080".into()),
        },
    );
    let err = StatusEntry::new(
        990_000,
        E::Error {
            key: A,
            reason: "peer left".into(),
        },
    );
    let v = one(
        &cmds,
        vec![
            online,
            ack(1, 0),
            mirrored(940_000, A, 12, 3 * 1024 * 1024),
            err,
        ],
    );
    let s = v.site(&A).unwrap();
    let text = render_site(s, 1_000_000);
    assert!(
        text.lines().any(|l| l == "state: error: peer left"),
        "{text}"
    );
    for needle in [
        A.to_hex(),
        A.to_z32(),
        "alias: blog".into(),
        "version: 12".into(),
        "3.0 MiB (3145728 bytes)".into(),
        "peers: 3".into(),
        format!("http: http://pi:8080/{}/", A.to_hex()),
        "1970-01-01 00:15:40 UTC (60 s ago)".into(),
        "last error: peer left (10 s ago)".into(),
        format!("{}: error: peer left", M1.short()),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(
        Key::find_in_text(&text),
        Some(A),
        "the screen is also a link file"
    );
    let table = render_status_table(&v, 1_000_000);
    for needle in [
        "blog",
        "error: peer left",
        "3.0 MiB",
        &M1.to_hex(),
        "yes",
        "up to #0",
        "http://pi:8080",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    let offline = StatusView {
        mirrors: vec![MirrorSummary {
            online: false,
            last_seen_ms: Some(880_000),
            ..v.mirrors[0].clone()
        }],
        ..v.clone()
    };
    assert!(render_status_table(&offline, 1_000_000).contains("2 min ago"));
    // A status entry the laptop cannot use is said, not passed over in silence.
    let mut noted = v.clone();
    note_unreadable(
        &mut noted,
        M1,
        "status entry 7 cannot be read: damaged".into(),
    );
    assert!(
        render_status_table(&noted, 1_000_000).contains("status entry 7 cannot be read: damaged")
    );
    let x = xattrs(s);
    let names: Vec<&str> = x.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "key",
            "alias",
            "state",
            "version",
            "bytes",
            "peers",
            "http",
            "error",
            "last_sync"
        ]
        .map(|n| format!("user.dat-mirror.{n}"))
    );
    let get = |n: &str| {
        String::from_utf8(x.iter().find(|(k, _)| k.ends_with(n)).unwrap().1.clone()).unwrap()
    };
    assert_eq!(
        (get(".state"), get(".bytes"), get(".alias")),
        ("error: peer left".into(), "3145728".into(), "blog".into())
    );
    assert_eq!(get(".last_sync"), "1970-01-01T00:15:40Z");
    let empty = render_status_table(&fold(ME, &[], &[], 0), 0);
    assert!(
        empty.contains("no sites") && empty.contains("no mirror paired"),
        "{empty}"
    );
}

#[test]
fn formatting_helpers() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    assert_eq!(format_utc(1_714_566_896_000), "2024-05-01 12:34:56 UTC");
    assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    assert_eq!(ago(10_000, 5_000), "5 s ago");
    assert_eq!(ago(10_000_000, 5_000_000), "83 min ago");
    assert_eq!(ago(0, 5_000), "in the future (check the clocks)");
    assert_eq!(ago(1_000_000_000, 0), "11 d ago");
}

#[test]
fn syncing_carries_blocks_and_bytes_of_total() {
    let cmds = [mirror(A, None)];
    let p = StatusEntry::new(
        7,
        E::Progress {
            key: A,
            version: 2,
            blocks: 120,
            total_blocks: 300,
            bytes: 1_258_292,
            total_bytes: 3 * 1024 * 1024,
            peers: 1,
        },
    );
    let v = one(&cmds, vec![ack(1, 0), p]);
    let s = v.site(&A).unwrap();
    assert_eq!(
        s.state,
        SiteState::Syncing {
            percent: 40,
            blocks: 120,
            total_blocks: 300,
            bytes: 1_258_292,
            total_bytes: 3 * 1024 * 1024,
        }
    );
    assert_eq!(s.state.to_string(), "syncing 40%");
    assert_eq!(
        s.state.detail(),
        "syncing 40% (120/300 blocks, 1.2 MiB of 3.0 MiB)"
    );
    assert_eq!(s.state.compact(), "syncing 40% of 3.0 MiB");
    let text = render_site(s, 10_000);
    assert!(text.lines().any(|l| l == "state: syncing 40%"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "progress: 120/300 blocks, 1.2 MiB of 3.0 MiB"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: syncing 40% (120/300 blocks, 1.2 MiB of 3.0 MiB); 1 peer; updated 9 s ago; online",
            M1.short()
        )),
        "{text}"
    );
    let table = render_status_table(&v, 10_000);
    assert!(table.contains("syncing 40% of 3.0 MiB"), "{table}");
}

#[test]
fn the_latest_event_being_an_error_is_the_state() {
    let cmds = [mirror(A, None)];
    let err = |at| {
        StatusEntry::new(
            at,
            E::Error {
                key: A,
                reason: "disk full".into(),
            },
        )
    };
    // Mirrored, then an error: the error is the state now.
    let v = one(&cmds, vec![ack(1, 0), mirrored(2, A, 4, 10), err(3)]);
    assert_eq!(state(&v, A), "error: disk full");
    // The error, then progress again: syncing, the error stays as the last error.
    let v = one(&cmds, vec![ack(1, 0), err(2), progress(3, A, 5, 10)]);
    assert_eq!(state(&v, A), "syncing 50%");
    assert_eq!(v.site(&A).unwrap().last_error.as_deref(), Some("disk full"));
}

#[test]
fn per_mirror_data_and_sites_held() {
    let cmds = [mirror(A, Some("blog")), mirror(B, None)];
    let other = Key([0xcc; 32]);
    let m1 = MirrorInput {
        online: true,
        ..input(
            M1,
            vec![
                ack(1, 1),
                mirrored(5_000, A, 12, 3 * 1024 * 1024),
                progress(6_000, B, 25, 100),
                // Another laptop's site on the same mirror.
                mirrored(6_500, other, 1, 10),
            ],
        )
    };
    let m2 = MirrorInput {
        online: false,
        last_seen_ms: Some(30_000),
        ..input(
            M2,
            vec![
                ack(1, 1),
                mirrored(4_000, A, 11, 1024),
                mirrored(4_100, B, 2, 100),
                StatusEntry::new(4_200, E::Removed { key: other }),
            ],
        )
    };
    let v = fold(ME, &cmds, &[m1, m2], 140_000);
    let a = v.site(&A).unwrap();
    assert_eq!(a.per_mirror.len(), 2);
    let (p1, p2) = (&a.per_mirror[0], &a.per_mirror[1]);
    assert_eq!(
        (p1.version, p1.blocks, p1.bytes, p1.peers, p1.updated_ms),
        (
            Some(12),
            Some(7),
            Some(3 * 1024 * 1024),
            Some(3),
            Some(5_000)
        )
    );
    assert_eq!(
        (p2.state.to_string(), p2.version, p2.online, p2.last_seen_ms),
        ("mirrored v11".to_string(), Some(11), false, Some(30_000))
    );
    let text = render_site(a, 140_000);
    for needle in [
        format!(
            "  {}: mirrored v12 (7 blocks, 3.0 MiB); 3 peers; updated 2 min ago; online",
            M1.short()
        ),
        format!(
            "  {}: mirrored v11 (7 blocks, 1.0 KiB); 3 peers; updated 2 min ago; offline, last seen 110 s ago",
            M2.short()
        ),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    // Sites held: M1 holds A (B is syncing) and another laptop's site; M2 holds A and B.
    let (s1, s2) = (&v.mirrors[0], &v.mirrors[1]);
    assert_eq!((s1.sites_held, s1.sites_held_all), (1, 2));
    assert_eq!((s2.sites_held, s2.sites_held_all), (2, 2));
    let table = render_status_table(&v, 140_000);
    let row = |m: Key| {
        table
            .lines()
            .find(|l| l.starts_with(&m.to_hex()))
            .unwrap_or_else(|| panic!("no row for {m} in\n{table}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(table.contains("SITES HELD"), "{table}");
    assert_eq!(row(M1)[1..6], ["yes", "now", "1", "(2", "in"], "{table}");
    assert_eq!(row(M2)[1..6], ["no", "110", "s", "ago", "2"], "{table}");
    // A site I unmirror no longer counts as held by me.
    let cmds = [mirror(A, None), mirror(B, None), unmirror(A)];
    let m = input(
        M1,
        vec![ack(1, 1), mirrored(5, A, 1, 1), mirrored(6, B, 1, 1)],
    );
    let v = fold(ME, &cmds, &[m], 0);
    assert_eq!(v.mirrors[0].sites_held, 1);
}

#[test]
fn the_view_round_trips_through_json_and_finds_sites_by_name() {
    let cmds = [mirror(A, Some("blog")), mirror(B, None)];
    let v = one(&cmds, vec![ack(1, 1), progress(2, A, 1, 2)]);
    let json = serde_json::to_string(&v).unwrap();
    let back: StatusView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
    assert!(json.contains("\"state\":\"syncing\""), "{json}");
    assert_eq!(v.find("blog").map(|s| s.key), Some(A));
    assert_eq!(v.find(&B.to_link()).map(|s| s.key), Some(B));
    assert_eq!(v.find(&B.to_z32()).map(|s| s.key), Some(B));
    assert!(v.find("nope").is_none());
}

#[path = "view_oracle.rs"]
mod oracle;

/// The indexed fold equals the quadratic oracle on random command and status logs (keys,
/// acks, rejections, removals and re-mirrorings, errors; two mirrors).
#[test]
fn the_indexed_fold_equals_the_plain_one_on_random_logs() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let keys = [A, B, Key([0xcc; 32]), Key([0xdd; 32])];
    for round in 0..2_000 {
        let n_cmds = next(12) as usize;
        let cmds: Vec<Result<Command, CommandError>> = (0..n_cmds)
            .map(|_| {
                let k = keys[next(4) as usize];
                match next(3) {
                    0 => unmirror(k),
                    1 => mirror(k, Some("a")),
                    _ => mirror(k, None),
                }
            })
            .collect();
        let mut status = || -> Vec<StatusEntry> {
            (0..next(25))
                .map(|at| {
                    let k = keys[next(4) as usize];
                    let seq = next(n_cmds as u64 + 2);
                    let event = match next(8) {
                        0 | 1 => E::Ack { log: ME, seq },
                        2 => E::Ack { log: B, seq },
                        3 => E::Rejected {
                            log: ME,
                            seq,
                            reason: format!("r{at}"),
                        },
                        4 => E::Removed { key: k },
                        5 => E::Error {
                            key: k,
                            reason: format!("e{at}"),
                        },
                        6 => return progress(next(5), k, next(100), 100),
                        _ => return mirrored(next(5), k, next(9), next(1000)),
                    };
                    StatusEntry::new(next(5), event)
                })
                .collect()
        };
        let mirrors = [input(M1, status()), input(M2, status())];
        let n_mirrors = next(3) as usize;
        let got = fold(ME, &cmds, &mirrors[..n_mirrors], 77);
        let want = oracle::fold(ME, &cmds, &mirrors[..n_mirrors], 77);
        assert_eq!(got, want, "round {round}: {cmds:?} {mirrors:?}");
        for k in keys {
            assert_eq!(got.site(&k), want.site(&k), "round {round}");
        }
    }
}
