//! `dat-mirror status [--wait SITE] [--timeout SECS] [--json]`: the control folder's `STATUS`
//! table from the command line, and a progress bar that waits until a site is mirrored.
//!
//! Where the view comes from:
//! - the running laptop daemon (`dat-mirror mount`), asked over its control socket: live;
//! - else, if no process holds the data folder, the data folder itself (what the mirrors last
//!   reported; every mirror shown offline), with a note on stderr saying so;
//! - `--wait` needs the daemon (only it talks to the mirrors), and says so if none runs.
//!
//! On a mirror's data folder it prints what needs the mirror's owner instead: problems found
//! at start and the trash ([`super::trash`]).
//!
//! Exit codes: 0 done (for `--wait`: mirrored on at least one mirror); 1 could not ask
//! (no daemon for `--wait`, folder busy, ...); 2 the site cannot become mirrored (error,
//! removed, not in the folder); 3 `--timeout` passed first.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::laptop::control_socket::{self, Answer, Request};
use crate::model::keys::Key;
use crate::model::view::{render_status_table, SiteState, SiteView, StatusView};
use crate::util::clock::now_ms;

/// How often `--wait` asks the daemon.
const POLL: Duration = Duration::from_millis(200);

/// A failure with its own exit code (see the module docs).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusExit {
    pub code: i32,
    pub message: String,
}

fn exit(code: i32, message: impl Into<String>) -> anyhow::Error {
    StatusExit {
        code,
        message: message.into(),
    }
    .into()
}

/// The view from the daemon, or `None` if no daemon answers on `data`.
pub async fn ask_daemon(data: &Path) -> anyhow::Result<Option<StatusView>> {
    match control_socket::call(data, &Request::Status).await? {
        None => Ok(None),
        Some(Answer::Status(view)) => Ok(Some(*view)),
        Some(Answer::Error(e)) => Err(exit(1, format!("the running dat-mirror says: {e}"))),
        Some(other) => Err(exit(
            1,
            format!("the running dat-mirror answered {other:?} to a status request; is it the same version as this one?"),
        )),
    }
}

/// Show every site and mirror (the control folder's STATUS), or wait until a site is mirrored
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror status                          # the STATUS table, from the running `dat-mirror mount`\n  \
dat-mirror status --json                   # the same as JSON\n  \
dat-mirror status --wait blog --timeout 600   # progress bar until `blog` is mirrored\n\
Without a running `dat-mirror mount`, it prints what the data folder last heard (mirrors shown offline);\n\
--wait needs the daemon.\n\
Exit codes: 0 ok / mirrored; 1 cannot ask; 2 the site errored, was removed or is not in the folder; 3 --timeout.")]
pub struct Args {
    /// Wait until this site (key, link or alias) is mirrored on at least one mirror
    #[arg(long, value_name = "SITE")]
    pub wait: Option<String>,
    /// With --wait: give up after this many seconds (exit code 3) [default: wait forever]
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub timeout: Option<u64>,
    /// Print JSON (the whole view; with --wait, the site once mirrored)
    #[arg(long)]
    pub json: bool,
}

/// `dat-mirror status`: see the module docs.
pub async fn run(args: Args, s: &crate::config::Settings) -> anyhow::Result<()> {
    let timeout = args.timeout.map(Duration::from_secs);
    status(&s.data_dir()?, args.wait.as_deref(), timeout, args.json).await
}

/// `dat-mirror status` on the data folder `data`, with or without `--wait`.
pub async fn status(
    data: &Path,
    wait: Option<&str>,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<()> {
    if matches!(super::peers::role_of(data), Ok(super::peers::Role::Mirror)) {
        if wait.is_some() {
            return Err(exit(
                1,
                "this is a mirror's data folder: --wait is for a laptop (run it there)",
            ));
        }
        return super::trash::mirror_status(data, json)
            .await
            .map_err(|e| exit(1, format!("{e:#}")));
    }
    let daemon = ask_daemon(data).await?;
    let Some(name) = wait else {
        let view = match daemon {
            Some(v) => v,
            None => {
                let v = control_socket::view_from_disk(data).await.map_err(|e| {
                    exit(1, format!("no `dat-mirror mount` is running on {}, and the data folder cannot be read: {e:#}", data.display()))
                })?;
                crate::noteln!(
                    "note: no `dat-mirror mount` is running on {}: this is what the data folder \
                     last heard from the mirrors (shown offline). Start `dat-mirror mount` for live status.",
                    data.display()
                );
                v
            }
        };
        print_view(&view, json)?;
        return Ok(());
    };
    let Some(view) = daemon else {
        return Err(exit(
            1,
            format!(
                "no `dat-mirror mount` is running on {}: --wait needs it (it is what talks to the mirrors). \
                 Start it, then run this again.",
                data.display()
            ),
        ));
    };
    let key = resolve(&view, name)?;
    wait_for(data, key, name, &view, timeout, json).await
}

fn print_view(view: &StatusView, json: bool) -> anyhow::Result<()> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(view)?)?;
    } else {
        crate::out!("{}", render_status_table(view, view.at_ms))?;
    }
    Ok(())
}

fn resolve(view: &StatusView, name: &str) -> anyhow::Result<Key> {
    if let Some(site) = view.find(name) {
        return Ok(site.key);
    }
    Err(exit(
        2,
        format!(
            "no site '{name}' in the control folder: add it first (`touch MOUNTPOINT/<key>` or \
             `echo hyper://<key> > MOUNTPOINT/{name}`), then wait for it"
        ),
    ))
}

/// What one look at the view says about the wait.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitStep {
    /// Mirrored at `version` on the mirror `by`.
    Done { version: u64, by: Key },
    /// Cannot get there: why.
    Failed(String),
    /// Not yet.
    Pending,
}

/// Pure: where a wait for `key` stands in `view`.
pub fn wait_step(view: &StatusView, key: &Key) -> WaitStep {
    let Some(site) = view.site(key) else {
        return WaitStep::Failed("the site was removed from the control folder".into());
    };
    if site.removing {
        return WaitStep::Failed(format!("the site is {} (it was rm'd)", site.state));
    }
    if let Some((version, by)) = site
        .per_mirror
        .iter()
        .filter_map(|p| match p.state {
            SiteState::Mirrored { version } => Some((version, p.mirror)),
            _ => None,
        })
        .max_by_key(|(v, _)| *v)
    {
        return WaitStep::Done { version, by };
    }
    match &site.state {
        SiteState::Error { reason } => WaitStep::Failed(format!("error: {reason}")),
        SiteState::Removed => WaitStep::Failed("the site was removed".into()),
        _ => WaitStep::Pending,
    }
}

async fn wait_for(
    data: &Path,
    key: Key,
    name: &str,
    first: &StatusView,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} {wide_msg} [{bar:30}] {binary_bytes}/{binary_total_bytes}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    // Without a terminal the bar draws nothing: say each new state on a line instead.
    let plain = !std::io::stderr().is_terminal();
    let mut last_said = String::new();
    let mut view = first.clone();
    loop {
        let step = wait_step(&view, &key);
        let site = view.site(&key);
        if let Some(site) = site {
            show(&bar, site, plain, &mut last_said);
        }
        match step {
            WaitStep::Done { version, by } => {
                bar.finish_and_clear();
                if json {
                    let site = view.site(&key).expect("a mirrored site is in the view");
                    crate::outln!("{}", serde_json::to_string_pretty(site)?)?;
                } else {
                    crate::outln!("{name}: mirrored v{version} on {by}")?;
                }
                return Ok(());
            }
            WaitStep::Failed(reason) => {
                bar.abandon();
                return Err(exit(2, format!("{name}: {reason}")));
            }
            WaitStep::Pending => {}
        }
        if let Some(t) = timeout {
            if started.elapsed() >= t {
                bar.abandon();
                let state = site.map_or_else(|| "unknown".to_string(), |s| s.state.detail());
                return Err(exit(
                    3,
                    format!(
                        "{name}: still {state} after {:.0} s (--timeout)",
                        t.as_secs_f64()
                    ),
                ));
            }
        }
        tokio::time::sleep(POLL).await;
        view = match ask_daemon(data).await? {
            Some(v) => v,
            None => {
                bar.abandon();
                return Err(exit(
                    1,
                    "the `dat-mirror mount` daemon stopped while waiting; start it again and rerun",
                ));
            }
        };
    }
}

/// Updates the bar (and, without a terminal, prints each new state once).
fn show(bar: &ProgressBar, site: &SiteView, plain: bool, last_said: &mut String) {
    let said = site.state.detail();
    if let SiteState::Syncing {
        bytes, total_bytes, ..
    } = site.state
    {
        bar.set_length(total_bytes);
        bar.set_position(bytes.min(total_bytes));
    }
    bar.set_message(said.clone());
    if plain && said != *last_said {
        crate::noteln!(
            "{} {}: {said}",
            crate::model::view::format_utc(now_ms()),
            site.alias.clone().unwrap_or_else(|| site.key.short())
        );
        *last_said = said;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::command::Command;
    use crate::model::status::{StatusEntry, StatusEvent};
    use crate::model::view::{fold, MirrorInput};

    const ME: Key = Key([1; 32]);
    const M1: Key = Key([0xa1; 32]);
    const M2: Key = Key([0xa2; 32]);
    const S: Key = Key([0x55; 32]);

    fn view(cmds: &[Command], m1: Vec<StatusEvent>, m2: Vec<StatusEvent>) -> StatusView {
        let cmds: Vec<_> = cmds.iter().cloned().map(Ok).collect();
        let input = |m, events: Vec<StatusEvent>| MirrorInput {
            mirror: m,
            status: events.into_iter().map(|e| StatusEntry::new(1, e)).collect(),
            online: true,
            last_seen_ms: None,
        };
        fold(ME, &cmds, &[input(M1, m1), input(M2, m2)], 10)
    }

    #[test]
    fn wait_steps() {
        let add = Command::Mirror {
            key: S,
            alias: None,
        };
        let ack = |seq| StatusEvent::Ack { log: ME, seq };
        let mirrored = StatusEvent::Mirrored {
            key: S,
            version: 4,
            blocks: 1,
            bytes: 1,
            peers: 0,
        };
        let error = StatusEvent::Error {
            key: S,
            reason: "disk full".into(),
        };
        let add1 = std::slice::from_ref(&add);
        assert_eq!(
            wait_step(&view(add1, vec![], vec![]), &S),
            WaitStep::Pending
        );
        assert_eq!(
            wait_step(&view(add1, vec![ack(0), error.clone()], vec![]), &S),
            WaitStep::Pending,
            "another mirror may still get there"
        );
        assert_eq!(
            wait_step(
                &view(add1, vec![ack(0), error.clone()], vec![ack(0), error]),
                &S
            ),
            WaitStep::Failed("error: disk full".into())
        );
        assert_eq!(
            wait_step(&view(add1, vec![ack(0)], vec![ack(0), mirrored]), &S),
            WaitStep::Done { version: 4, by: M2 }
        );
        let rm = [add.clone(), Command::Unmirror { key: S }];
        assert!(matches!(
            wait_step(&view(&rm, vec![ack(0)], vec![]), &S),
            WaitStep::Failed(r) if r.contains("removing")
        ));
        assert!(matches!(
            wait_step(&view(&rm, vec![ack(1)], vec![ack(1)]), &S),
            WaitStep::Failed(r) if r.contains("removed")
        ));
    }
}
