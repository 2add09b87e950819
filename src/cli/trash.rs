//! `dat-mirror trash [empty]`, on the mirror: what start-up moved aside to `DATA/trash/`
//! (site data no command asked for — kept rather than deleted, see
//! [`crate::mirror::leftovers`]), since when and how large, and emptying it. Asks the
//! running `serve` through its control socket; with no mirror running, reads (or, for
//! `empty`, locks and empties) the data folder itself.

use std::path::Path;

use crate::config::Settings;
use crate::host::{DataDir, DataLock};
use crate::ipc;
use crate::mirror::control_socket::{MirrorAnswer, MirrorRequest};
use crate::mirror::leftovers::{self, TrashItem};
use crate::model::units::format_size;
use crate::model::view::ago;
use crate::util::clock::now_ms;

/// On the mirror: show or empty the trash (site data no command asked for, moved aside)
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
dat-mirror trash          # what is in the trash, since when, how large\n  \
dat-mirror trash empty    # delete it now\n\
Trash older than [serve] trash_days (default 7) is deleted by the mirror itself.")]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Delete everything in the trash now
    Empty,
}

pub async fn run(args: Args, s: &Settings) -> anyhow::Result<()> {
    let data = s.data_dir()?;
    match args.action {
        None => show(&data).await,
        Some(Action::Empty) => empty(&data).await,
    }
}

/// `dat-mirror status` on a mirror's data folder.
pub async fn mirror_status(data: &Path, json: bool) -> anyhow::Result<()> {
    let (items, problems, days) = ask(data).await?;
    if json {
        let v = serde_json::json!({ "problems": problems, "trash": items, "trash_days": days });
        crate::outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    crate::outln!(
        "mirror data folder {}: sites and laptops are on the status page (`dat-mirror \
         status-link` prints a link that opens it from anywhere), laptops also in `dat-mirror peers`",
        data.display()
    )?;
    print_trash(&items, &problems, days)?;
    Ok(())
}

async fn show(data: &Path) -> anyhow::Result<()> {
    let (items, problems, days) = ask(data).await?;
    print_trash(&items, &problems, days)?;
    Ok(())
}

/// Trash items, problems and `trash_days` from the running mirror, else from the folder.
async fn ask(data: &Path) -> anyhow::Result<(Vec<TrashItem>, Vec<String>, Option<u64>)> {
    Ok(
        match ipc::call::<_, MirrorAnswer>(data, &MirrorRequest::Trash).await? {
            Some(MirrorAnswer::Trash {
                items,
                problems,
                trash_days,
            }) => (items, problems, Some(trash_days)),
            Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
            Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
            None => (
                leftovers::trash_contents(&DataDir::new(data))?,
                vec![],
                None,
            ),
        },
    )
}

fn print_trash(items: &[TrashItem], problems: &[String], days: Option<u64>) -> std::io::Result<()> {
    for p in problems {
        crate::outln!("problem: {p}")?;
    }
    crate::out!("{}", render(items, now_ms()))?;
    if !items.is_empty() {
        match days {
            Some(0) => crate::outln!("kept until `dat-mirror trash empty` (trash_days = 0)")?,
            Some(d) => crate::outln!(
                "deleted by the mirror after {d} days, or now with `dat-mirror trash empty`"
            )?,
            None => crate::outln!("(no mirror running) `dat-mirror trash empty` deletes it")?,
        }
    }
    Ok(())
}

/// The trash as lines: a summary, then one line per entry.
pub fn render(items: &[TrashItem], now: u64) -> String {
    if items.is_empty() {
        return "trash: empty\n".into();
    }
    let total = items.iter().fold(0u64, |a, i| a.saturating_add(i.bytes));
    let mut out = format!(
        "trash: {} entries, {} (site data no command asked for, moved aside at start)\n",
        items.len(),
        format_size(total)
    );
    for i in items {
        let since = i.since_ms.map_or_else(|| "?".into(), |t| ago(now, t));
        out.push_str(&format!(
            "  {}  {:>10}  moved {since}\n",
            i.key.as_deref().unwrap_or(&i.name),
            format_size(i.bytes)
        ));
    }
    out
}

async fn empty(data: &Path) -> anyhow::Result<()> {
    let n = match ipc::call::<_, MirrorAnswer>(data, &MirrorRequest::EmptyTrash).await? {
        Some(MirrorAnswer::TrashEmptied(n)) => n,
        Some(MirrorAnswer::Error(e)) => anyhow::bail!("{e}"),
        Some(other) => anyhow::bail!("unexpected answer from the mirror: {other:?}"),
        None => {
            let _lock = DataLock::acquire(data)?;
            leftovers::empty_trash(&DataDir::new(data), None)?
        }
    };
    crate::outln!("deleted {n} trash entries")?;
    Ok(())
}
