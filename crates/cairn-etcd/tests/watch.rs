//! The Watch service through the real `etcd-client`: catch-up from history then the live feed
//! (in order, once each, through a lagging feed too), `prev_kv` and filters, fragments, a
//! start below the compaction, cancel, progress.

mod support;

use std::time::Duration;

use cairn_etcd::EtcdConfig;
use etcd_client::{
    Client, DeleteOptions, EventType, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use support::{Harness, bounded};

/// The next response of `stream`.
async fn next(stream: &mut WatchStream) -> WatchResponse {
    bounded(stream.message()).await.expect("the watch stream").expect("a response")
}

/// Opens a watch and reads its `created` answer; answers the stream and the watch id.
async fn watch(client: &mut Client, key: &str, options: WatchOptions) -> (WatchStream, i64) {
    let mut stream = bounded(client.watch(key, Some(options))).await.expect("watch");
    let created = next(&mut stream).await;
    assert!(created.created() && !created.canceled(), "{created:?}");
    (stream, created.watch_id())
}

/// Reads event responses until `count` events came; answers each event's (revision, key).
async fn events(stream: &mut WatchStream, count: usize) -> Vec<(i64, Vec<u8>)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let response = next(stream).await;
        assert!(!response.canceled(), "{response:?}");
        for event in response.events() {
            let kv = event.kv().expect("an event's key");
            seen.push((kv.mod_revision(), kv.key().to_vec()));
        }
    }
    seen
}

async fn put_many(client: &mut Client, prefix: &str, count: usize) {
    for i in 0..count {
        bounded(client.put(format!("{prefix}{i:03}"), "v", None)).await.expect("put");
    }
}

fn revisions(seen: &[(i64, Vec<u8>)]) -> Vec<i64> {
    seen.iter().map(|(revision, _)| *revision).collect()
}

#[tokio::test]
async fn a_watch_from_the_past_catches_up_then_follows_in_order() {
    let config = EtcdConfig { history_page_revisions: 2, ..EtcdConfig::default() };
    let mut h = Harness::start_with(config, 1024).await;
    put_many(&mut h.client, "w/", 5).await; // revisions 2..=6
    bounded(h.client.put("other", "x", None)).await.unwrap(); // 7, outside the prefix
    let options = WatchOptions::new().with_prefix().with_start_revision(3);
    let (mut stream, _) = watch(&mut h.client, "w/", options).await;
    put_many(&mut h.client, "w/live", 2).await; // 8, 9
    let seen = events(&mut stream, 6).await;
    assert_eq!(revisions(&seen), [3, 4, 5, 6, 8, 9]);
    assert_eq!(seen[0].1, b"w/001");
    h.stop().await;
}

#[tokio::test]
async fn a_lagging_feed_falls_back_to_history_without_loss_or_repeats() {
    // A feed of one revision: the stream lags as soon as two revisions are applied before
    // it runs.
    let config = EtcdConfig {
        history_page_revisions: 3,
        stream_responses_buffered: 1,
        ..EtcdConfig::default()
    };
    let mut h = Harness::start_with(config, 1).await;
    let (mut stream, _) = watch(&mut h.client, "k/", WatchOptions::new().with_prefix()).await;
    // Revisions 2..=201 while the server's tasks cannot run: the feed keeps the last one.
    for i in 0..200 {
        h.backend.put_now(&format!("k/{i:03}"), "v");
    }
    let seen = events(&mut stream, 200).await;
    assert_eq!(revisions(&seen), (2..=201).collect::<Vec<_>>());
    h.stop().await;
}

#[tokio::test]
async fn prev_kv_and_filters() {
    let mut h = Harness::start().await;
    let options = WatchOptions::new().with_prev_key().with_filters([WatchFilterType::NoPut]);
    let (mut deletes, _) = watch(&mut h.client, "f", options).await;
    let (mut puts, _) =
        watch(&mut h.client, "f", WatchOptions::new().with_filters([WatchFilterType::NoDelete]))
            .await;
    bounded(h.client.put("f", "1", None)).await.unwrap();
    bounded(h.client.put("f", "2", None)).await.unwrap();
    bounded(h.client.delete("f", None)).await.unwrap();
    let response = next(&mut deletes).await;
    let event = &response.events()[0];
    assert_eq!(event.event_type(), EventType::Delete);
    assert_eq!(event.kv().unwrap().mod_revision(), 4);
    assert_eq!(event.prev_kv().unwrap().value(), b"2", "the value before the delete");
    let seen = events(&mut puts, 2).await;
    assert_eq!(revisions(&seen), [2, 3]);
    h.stop().await;
}

#[tokio::test]
async fn a_revision_larger_than_a_response_is_fragmented_only_when_asked() {
    let config = EtcdConfig { request_bytes_max: 1024, ..EtcdConfig::default() };
    let mut h = Harness::start_with(config, 1024).await;
    for i in 0..5 {
        bounded(h.client.put(format!("big/{i}"), vec![b'v'; 500], None)).await.unwrap();
    }
    let options = WatchOptions::new().with_prefix().with_prev_key();
    let (mut whole, _) = watch(&mut h.client, "big/", options.clone()).await;
    let (mut split, _) = watch(&mut h.client, "big/", options.with_fragment()).await;
    let deleted = DeleteOptions::new().with_prefix();
    bounded(h.client.delete("big/", Some(deleted))).await.unwrap();
    let response = next(&mut whole).await;
    assert_eq!(response.events().len(), 5, "one revision, one response");
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < 5 {
        sizes.push(next(&mut split).await.events().len());
    }
    // etcd-client reassembles nothing and shows no `fragment` flag: each event alone fits
    // 1 KiB, two do not.
    assert_eq!(sizes, [1, 1, 1, 1, 1]);
    h.stop().await;
}

#[tokio::test]
async fn a_watch_below_the_compaction_is_canceled_with_the_compact_revision() {
    let mut h = Harness::start().await;
    put_many(&mut h.client, "c/", 4).await; // 2..=5
    bounded(h.client.compact(4, None)).await.unwrap();
    let options = WatchOptions::new().with_prefix().with_start_revision(2);
    let (mut stream, id) = watch(&mut h.client, "c/", options).await;
    let response = next(&mut stream).await;
    assert!(response.canceled(), "{response:?}");
    assert_eq!((response.watch_id(), response.compact_revision()), (id, 4));
    h.stop().await;
}

#[tokio::test]
async fn cancel_then_progress() {
    let mut h = Harness::start().await;
    let (mut stream, first) = watch(&mut h.client, "a", WatchOptions::new()).await;
    bounded(stream.watch("b", None)).await.unwrap();
    let created = next(&mut stream).await;
    assert!(created.created());
    assert_ne!(created.watch_id(), first, "the server picks distinct ids");
    bounded(stream.cancel(first)).await.unwrap();
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled() && canceled.watch_id() == first, "{canceled:?}");
    bounded(h.client.put("a", "1", None)).await.unwrap(); // 2: the canceled watch's key
    bounded(h.client.put("b", "1", None)).await.unwrap(); // 3
    let seen = events(&mut stream, 1).await;
    assert_eq!(seen, [(3, b"b".to_vec())]);
    bounded(stream.request_progress()).await.unwrap();
    let progress = next(&mut stream).await;
    assert!(progress.events().is_empty() && !progress.canceled(), "{progress:?}");
    assert_eq!((progress.watch_id(), progress.header().unwrap().revision()), (-1, 3));
    h.stop().await;
}

#[tokio::test]
async fn progress_notify_reports_an_idle_watch() {
    let config =
        EtcdConfig { progress_interval: Duration::from_millis(20), ..EtcdConfig::default() };
    let mut h = Harness::start_with(config, 1024).await;
    bounded(h.client.put("p", "1", None)).await.unwrap();
    let (mut stream, id) =
        watch(&mut h.client, "p", WatchOptions::new().with_progress_notify()).await;
    let notified = next(&mut stream).await;
    assert!(notified.events().is_empty(), "{notified:?}");
    assert_eq!((notified.watch_id(), notified.header().unwrap().revision()), (id, 2));
    h.stop().await;
}
