//! The mirror throttles `Progress` entries to about one per second per site, so the status
//! log stays small while a big site syncs. Count-based: over a sync of many block arrivals,
//! consecutive Progress entries of the site are at least ~1 s apart (by their timestamps) and
//! their number is at most the sync's duration in seconds plus slack. No timing is asserted.

mod common;

use common::*;
use dat_mirror::model::command::Command;
use dat_mirror::model::status::{StatusEntry, StatusEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_entries_are_throttled_per_site() {
    let p = Pair::start().await;
    // 12 MiB: ~190 blobs blocks, each arrival wakes the site task.
    make_site(&p.site_dir, 12 * 1024 * 1024);
    let site = publish(&p.laptop, &p.site_dir, None).await;
    p.laptop
        .inner
        .append(Command::Mirror {
            key: site.key,
            alias: None,
        })
        .await
        .unwrap();
    wait_until("the site to be mirrored", || async {
        p.laptop.inner.view().site(&site.key).and_then(|s| {
            s.per_mirror[0]
                .state
                .to_string()
                .starts_with("mirrored")
                .then_some(())
        })
    })
    .await;

    let core = p.mirror.inner.status.core().clone();
    let mut progress_at = Vec::new();
    let mut mirrored_at = None;
    let mut blocks_total = 0;
    for i in 0..core.info().length {
        let bytes = core.get(i).await.unwrap().expect("own log is complete");
        let e = StatusEntry::decode(&bytes).unwrap();
        match e.event {
            StatusEvent::Progress { key, .. } if key == site.key => progress_at.push(e.at),
            StatusEvent::Mirrored { key, blocks, .. }
                if key == site.key && mirrored_at.is_none() =>
            {
                mirrored_at = Some(e.at);
                blocks_total = blocks;
            }
            _ => {}
        }
    }
    let mirrored_at = mirrored_at.expect("a Mirrored entry");
    assert!(
        blocks_total > 150,
        "the sync had many block arrivals ({blocks_total})"
    );
    assert!(
        !progress_at.is_empty(),
        "at least one Progress before Mirrored"
    );
    for w in progress_at.windows(2) {
        // The throttle runs on a monotonic clock, the timestamps on the wall clock: 100 ms slack.
        assert!(
            w[1] >= w[0] + 900,
            "two Progress entries {} ms apart: {progress_at:?}",
            w[1] - w[0]
        );
    }
    let span_s = (mirrored_at - progress_at[0]) / 1000;
    assert!(
        progress_at.len() as u64 <= span_s + 2,
        "{} Progress entries over a {span_s} s sync",
        progress_at.len()
    );
    eprintln!(
        "{} Progress entries over {} ms of sync ({blocks_total} blocks)",
        progress_at.len(),
        mirrored_at - progress_at[0]
    );
}
