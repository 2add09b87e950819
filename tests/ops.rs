//! Operating dat-mirror: the configuration file and the order settings are taken in, help and
//! shell completions, `scripts/install.sh` (dry run, idempotence) and the systemd units it
//! installs, checked with `systemd-analyze verify`. Everything runs the real binary.
//!
//! Without `systemd-analyze` the unit check is skipped, loudly; with `CI=true` it fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dat-mirror");
const LAPTOP: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The binary with a clean environment: no DAT_MIRROR_* or XDG_* from the caller.
fn dat_mirror(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("DAT_MIRROR_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env("RUST_LOG", "warn");
    // Nothing may leave the machine: every discovery route off.
    c.env("DAT_MIRROR_NETWORK_MDNS", "false")
        .env("DAT_MIRROR_NETWORK_DHT", "false")
        .env("DAT_MIRROR_NETWORK_HYPERSWARM", "false")
        .env("DAT_MIRROR_NETWORK_RELAY", "off");
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run dat-mirror")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The `key = value  # source` line of `dat-mirror config` output for `key`, in `section`.
fn setting<'a>(config_out: &'a str, section: &str, key: &str) -> &'a str {
    let mut in_section = section.is_empty();
    for line in config_out.lines() {
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
            continue;
        }
        if in_section && line.starts_with(&format!("{key} = ")) {
            return line;
        }
    }
    panic!("no {section}.{key} in:\n{config_out}");
}

#[test]
fn help_teaches_with_examples() {
    let home = tempfile::tempdir().unwrap();
    let top = ok(dat_mirror(home.path()).arg("--help"));
    for want in [
        "Examples",
        "config.toml",
        "dat-mirror config",
        "serve",
        "mount",
    ] {
        assert!(top.contains(want), "--help lacks {want:?}:\n{top}");
    }
    for sub in ["id", "serve", "mount", "publish", "config", "completions"] {
        let help = ok(dat_mirror(home.path()).args([sub, "--help"]));
        assert!(
            help.contains("Example"),
            "{sub} --help has no example:\n{help}"
        );
        assert!(
            help.contains(&format!("dat-mirror {sub}")),
            "{sub} --help:\n{help}"
        );
    }
    let serve = ok(dat_mirror(home.path()).args(["serve", "--help"]));
    for want in [
        "[serve]",
        "DAT_MIRROR_SERVE_LISTEN",
        "config: serve.http",
        "--status",
        "--no-hyperswarm",
        "--hyperswarm-bootstrap",
    ] {
        assert!(
            serve.contains(want),
            "serve --help lacks {want:?}:\n{serve}"
        );
    }
    let mount = ok(dat_mirror(home.path()).args(["mount", "--help"]));
    for want in [
        "[mount]",
        "DAT_MIRROR_MOUNT_MIRRORS",
        "config: mount.mountpoint",
    ] {
        assert!(
            mount.contains(want),
            "mount --help lacks {want:?}:\n{mount}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(dat_mirror(home.path()).args(["completions", shell]));
        for word in [
            "serve",
            "mount",
            "publish",
            "completions",
            "allow",
            "mirror",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        let path = home.path().join(format!("completion.{shell}"));
        std::fs::write(&path, &script).unwrap();
        // Syntax check with the shell itself, where it is installed.
        match Command::new(shell).arg("-n").arg(&path).output() {
            Ok(out) => assert!(
                out.status.success(),
                "{shell} -n rejects the completion script: {}",
                text(&out.stderr)
            ),
            Err(_) => eprintln!(
                "NOTE: {shell} is not installed; its completion script was not syntax-checked"
            ),
        }
    }
    let bad = run(dat_mirror(home.path()).args(["completions", "tcsh"]));
    assert!(!bad.status.success());
}

#[test]
fn settings_come_from_flag_then_env_then_file_then_default() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg-config");
    std::fs::create_dir_all(xdg.join("dat-mirror")).unwrap();
    let file = xdg.join("dat-mirror/config.toml");
    std::fs::write(
        &file,
        format!(
            "data = \"~/from-file\"\n\n[serve]\nlisten = \"0.0.0.0:7001\"\nhttp = \"0.0.0.0:8001\"\n\
             allow = [\"{LAPTOP}\"]\n\n[mount]\nmountpoint = \"/mnt/dm\"\n"
        ),
    )
    .unwrap();

    // Nothing anywhere: defaults (data in XDG_DATA_HOME).
    let out = ok(dat_mirror(home.path())
        .env("XDG_DATA_HOME", home.path().join("xdg-data"))
        .arg("config"));
    assert!(out.contains("# not found"), "{out}");
    let data = setting(&out, "", "data");
    assert!(
        data.contains("xdg-data/dat-mirror") && data.ends_with("# default"),
        "{data}"
    );
    assert!(setting(&out, "serve", "listen").contains("\"0.0.0.0:7070\""));
    assert!(setting(&out, "serve", "http").contains("\"127.0.0.1:8080\""));

    // The file in XDG_CONFIG_HOME is found and used.
    let out = ok(dat_mirror(home.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .arg("config"));
    let src = format!("# {}:", file.display());
    assert!(out.contains("# read"), "{out}");
    let data = setting(&out, "", "data");
    assert!(
        data.contains(&format!("{}/from-file", home.path().display())) && data.contains(&src),
        "{data}"
    );
    assert!(setting(&out, "serve", "listen").contains("7001"));
    assert!(setting(&out, "serve", "allow").contains(LAPTOP));
    assert!(setting(&out, "mount", "mountpoint").contains("/mnt/dm"));

    // The environment beats the file; a flag beats the environment.
    let out = ok(dat_mirror(home.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .env("DAT_MIRROR_SERVE_HTTP", "127.0.0.1:9002")
        .env("DAT_MIRROR_DATA", "/from-env")
        .args(["--data", "/from-flag", "config"]));
    let http = setting(&out, "serve", "http");
    assert!(
        http.contains("9002") && http.ends_with("# $DAT_MIRROR_SERVE_HTTP"),
        "{http}"
    );
    let data = setting(&out, "", "data");
    assert!(
        data.contains("/from-flag") && data.ends_with("# command line"),
        "{data}"
    );
    assert!(
        setting(&out, "serve", "listen").contains("7001"),
        "file still used"
    );

    // --config names another file (and then it must exist).
    let other = home.path().join("other.toml");
    std::fs::write(&other, "[serve]\nlisten = \"0.0.0.0:7003\"\n").unwrap();
    let out = ok(dat_mirror(home.path()).env("XDG_CONFIG_HOME", &xdg).args([
        "--config".as_ref(),
        other.as_os_str(),
        "config".as_ref(),
    ]));
    assert!(setting(&out, "serve", "listen").contains("7003"));
    assert!(
        setting(&out, "serve", "http").contains("8080"),
        "not the XDG file"
    );
    let missing = run(dat_mirror(home.path()).args(["--config", "/nonexistent.toml", "id"]));
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("/nonexistent.toml"));

    // The printed settings are themselves a valid configuration file.
    let printed = home.path().join("printed.toml");
    std::fs::write(&printed, &out).unwrap();
    ok(dat_mirror(home.path()).args(["--config".as_ref(), printed.as_os_str(), "config".as_ref()]));
}

#[test]
fn config_errors_name_the_file_the_line_and_the_key() {
    let home = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[serve]\nlisten = \"0.0.0.0:1\"\nlisen = \"x\"\n",
            ":3: key `serve.lisen`",
            "unknown field",
        ),
        (
            "[serve]\n\nhttp = 8080\n",
            ":3: key `serve.http`",
            "invalid type",
        ),
        (
            "[mount]\nmirrors = [\n  \"oops\",\n]\n",
            ":3: key `mount.mirrors`",
            "ID@IP:PORT",
        ),
        ("data = \"rel/dir\"\n", ":1: key `data`", "relative"),
        ("[serve\n", ":1", ""),
    ];
    for (i, (body, want, why)) in cases.iter().enumerate() {
        let f = home.path().join(format!("bad{i}.toml"));
        std::fs::write(&f, body).unwrap();
        let out =
            run(dat_mirror(home.path()).args(["--config".as_ref(), f.as_os_str(), "id".as_ref()]));
        assert!(!out.status.success(), "{body:?} was accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("{}{want}", f.display())) && err.contains(why),
            "{body:?}: got {err}"
        );
    }
}

/// `config` and `serve` read the environment by one path: a bad variable is refused by both,
/// with the same message naming the variable. (Before the settings table, `serve` took its
/// environment from clap and `config` parsed it itself: two messages, two rules.)
#[test]
fn config_and_serve_read_the_environment_by_one_path() {
    let home = tempfile::tempdir().unwrap();
    let mut said = Vec::new();
    for sub in ["config", "serve"] {
        let out = run(dat_mirror(home.path())
            .env("DAT_MIRROR_SERVE_HTTP", "8080")
            .env("XDG_DATA_HOME", home.path().join("data"))
            .arg(sub));
        assert!(
            !out.status.success(),
            "{sub} accepted DAT_MIRROR_SERVE_HTTP=8080"
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("$DAT_MIRROR_SERVE_HTTP: \"8080\" is not an IP:PORT address"),
            "{sub}: {err}"
        );
        said.push(err);
    }
    assert_eq!(said[0], said[1], "config and serve disagree");
    // A flag is checked by the same parser and named in the error.
    let out = run(dat_mirror(home.path()).args(["serve", "--max-storage", "2X"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--max-storage: "),
        "{}",
        text(&out.stderr)
    );
}

/// The settings added with the table: `[serve] status`, `[network] hyperswarm` and
/// `hyperswarm_bootstrap`, from the file, the environment and flags, shown by `config`.
#[test]
fn status_and_hyperswarm_settings_show_with_their_source() {
    let home = tempfile::tempdir().unwrap();
    // (`config` only shows settings: the product default may be seen here.)
    let out = ok(dat_mirror(home.path())
        .env_remove("DAT_MIRROR_NETWORK_HYPERSWARM")
        .arg("config"));
    assert!(
        setting(&out, "serve", "status").contains("\"local\""),
        "{out}"
    );
    assert!(
        setting(&out, "network", "hyperswarm").contains("true"),
        "{out}"
    );
    assert!(
        setting(&out, "network", "hyperswarm_bootstrap").contains("[]"),
        "{out}"
    );

    let file = home.path().join("c.toml");
    std::fs::write(
        &file,
        "[serve]\nstatus = \"off\"\n\n[network]\nhyperswarm = false\n",
    )
    .unwrap();
    let out = ok(dat_mirror(home.path())
        .env(
            "DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP",
            "127.0.0.1:1,127.0.0.1:2",
        )
        .args(["--config".as_ref(), file.as_os_str(), "config".as_ref()]));
    let status = setting(&out, "serve", "status");
    assert!(
        status.contains("\"off\"") && status.ends_with(":2"),
        "{status}"
    );
    assert!(
        setting(&out, "network", "hyperswarm").contains("false"),
        "{out}"
    );
    let boot = setting(&out, "network", "hyperswarm_bootstrap");
    assert!(
        boot.contains("\"127.0.0.1:1\", \"127.0.0.1:2\"")
            && boot.ends_with("# $DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP"),
        "{boot}"
    );

    // Bad values name the file, the line and the key.
    std::fs::write(&file, "[network]\nhyperswarm_bootstrap = [\"nohost\"]\n").unwrap();
    let out =
        run(dat_mirror(home.path()).args(["--config".as_ref(), file.as_os_str(), "id".as_ref()]));
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!(
                "{}:2: key `network.hyperswarm_bootstrap`",
                file.display()
            ))
            && err.contains("HOST:PORT"),
        "{err}"
    );
    let out = run(dat_mirror(home.path()).args(["serve", "--status", "everyone"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--status: "),
        "{}",
        text(&out.stderr)
    );
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    text(&buf).lines().next().map(str::to_string)
}

/// `dat-mirror serve` with no flags at all, as the system service runs it: every setting
/// from the config file; SIGTERM (what `systemctl stop` sends) stops it with status 0.
#[test]
fn serve_runs_from_the_config_file_alone_and_stops_cleanly_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let quic = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let etc = home.path().join("etc");
    std::fs::create_dir_all(etc.join("dat-mirror")).unwrap();
    std::fs::write(
        etc.join("dat-mirror/config.toml"),
        format!(
            "[serve]\nlisten = \"127.0.0.1:{quic}\"\nhttp = \"{http}\"\nallow = [\"{LAPTOP}\"]\n\
             [serve.domains]\n\"WWW.Example.TEST\" = \"hyper://{LAPTOP}\"\n\
             [network]\nmdns = false\ndht = false\nrelay = \"off\"\n"
        ),
    )
    .unwrap();
    // The service's environment (see dist/systemd/dat-mirror-serve.service).
    let mut child = dat_mirror(home.path())
        .env("XDG_CONFIG_HOME", &etc)
        .env("XDG_DATA_HOME", home.path().join("var-lib"))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = http_status(http, "/") {
            break s;
        }
        if let Some(exit) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("serve exited early ({exit}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "no HTTP answer on {http} from the config file's address"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.contains(" 200 "), "GET / answered {status}");
    assert!(
        home.path().join("var-lib/dat-mirror").is_dir(),
        "data not in XDG_DATA_HOME"
    );

    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(exit.success(), "serve exited with {exit} on SIGTERM");
    assert!(out.contains("mirror key: "), "{out}");
    assert!(
        out.contains(&format!("following laptop {LAPTOP}")),
        "allow from the file: {out}"
    );
    assert!(out.contains(&format!("127.0.0.1:{quic}")), "{out}");
    assert!(
        out.contains(&format!("custom domain www.example.test serves {LAPTOP}")),
        "[serve.domains] from the file: {out}"
    );
}

fn install(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("scripts/install.sh"))
        .args(args)
        .output()
        .expect("run scripts/install.sh")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn install_dry_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let out = install(&[
        "--dry-run",
        "--files-only",
        "--prefix",
        prefix.to_str().unwrap(),
        "--binary",
        BIN,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!prefix.exists(), "a dry run created {}", prefix.display());
    for want in [
        "bin/dat-mirror",
        "lib/systemd/system/dat-mirror-serve.service",
        "lib/systemd/user/dat-mirror-mount.service",
        "share/bash-completion/completions/dat-mirror",
        "dry run: nothing was changed",
    ] {
        assert!(
            stdout.contains(want),
            "dry run does not mention {want}:\n{stdout}"
        );
    }
    // Without --binary a dry run says it would build with the dist profile (and builds nothing).
    let out = install(&[
        "--dry-run",
        "--files-only",
        "--prefix",
        prefix.to_str().unwrap(),
    ]);
    assert!(text(&out.stdout).contains("cargo build --locked --profile dist"));
    assert!(!prefix.exists());
    let bad = install(&["--prefix", "relative"]);
    assert!(!bad.status.success());
}

#[test]
fn install_is_idempotent_and_the_units_pass_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let p = prefix.to_str().unwrap();
    let first = install(&["--files-only", "--prefix", p, "--binary", BIN]);
    assert!(
        first.status.success(),
        "{}{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let files = files_under(&prefix);
    let rel: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&prefix).unwrap().display().to_string())
        .collect();
    for want in [
        "bin/dat-mirror",
        "lib/systemd/system/dat-mirror-serve.service",
        "lib/systemd/user/dat-mirror-mount.service",
        "share/bash-completion/completions/dat-mirror",
        "share/zsh/site-functions/_dat-mirror",
        "share/fish/vendor_completions.d/dat-mirror.fish",
        "share/doc/dat-mirror/config.example.toml",
    ] {
        assert!(
            rel.iter().any(|r| r == want),
            "{want} not installed; got {rel:?}"
        );
    }
    let before: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();

    let second = install(&["--files-only", "--prefix", p, "--binary", BIN]);
    let out2 = text(&second.stdout);
    assert!(second.status.success(), "{out2}");
    assert!(
        out2.contains("done: 0 changed"),
        "second run changed something:\n{out2}"
    );
    assert!(!out2.contains("installed "), "{out2}");
    let after: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "a second install rewrote files");
    assert_eq!(files_under(&prefix), files);

    // The units point at the installed binary and do what the services need.
    let serve = std::fs::read_to_string(prefix.join("lib/systemd/system/dat-mirror-serve.service"))
        .unwrap();
    let mount =
        std::fs::read_to_string(prefix.join("lib/systemd/user/dat-mirror-mount.service")).unwrap();
    assert!(
        serve.contains(&format!("ExecStart={p}/bin/dat-mirror serve")),
        "{serve}"
    );
    assert!(
        mount.contains(&format!("ExecStart={p}/bin/dat-mirror mount")),
        "{mount}"
    );
    for want in [
        "Restart=on-failure",
        "User=dat-mirror",
        "StateDirectory=dat-mirror",
        "KillSignal=SIGTERM",
    ] {
        assert!(serve.contains(want), "serve unit lacks {want}");
    }
    for want in [
        "Restart=on-failure",
        "ExecStopPost=-fusermount3 -u",
        "KillSignal=SIGTERM",
    ] {
        assert!(mount.contains(want), "mount unit lacks {want}");
    }

    // systemd's own check. Any output is a warning systemd would log: treat it as a failure.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        let msg = "systemd-analyze is not installed: the units' syntax was NOT verified \
                   (apt-get install systemd)";
        if in_ci() {
            panic!("{msg}; CI=true, so this is a failure");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let runtime = tmp.path().join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    for (user, unit) in [
        (
            false,
            prefix.join("lib/systemd/system/dat-mirror-serve.service"),
        ),
        (
            true,
            prefix.join("lib/systemd/user/dat-mirror-mount.service"),
        ),
    ] {
        let mut c = Command::new("systemd-analyze");
        // A user manager needs a runtime directory; a private one is enough for `verify`.
        c.env("XDG_RUNTIME_DIR", &runtime);
        if user {
            c.arg("--user");
        }
        let out = c.arg("verify").arg(&unit).output().unwrap();
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {}: {}\n{said}",
            unit.display(),
            out.status
        );
    }
}
