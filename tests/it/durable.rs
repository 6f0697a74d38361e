//! Durable queues (issue 10), against the real weir-server binary and real files: messages
//! survive kill -9, torn tails are cut at every byte offset, flipped bits are never
//! delivered, and stores that cannot be trusted are refused with exit 78.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::client::{Client, Event};
use weir::protocol::frame::{START_LAST, START_OLDEST, START_POSITION};
use weir::protocol::Start;

use crate::common::{client_options, free_addr, TempDir, WAIT};

const SERVER: &str = env!("CARGO_BIN_EXE_weir-server");
const QUEUE: &str = "jobs";

/// A weir-server process on a config file with a `data_dir`; killed (SIGKILL) when dropped.
struct Durable {
    child: Child,
}

impl Durable {
    /// Starts the server and waits until it accepts connections.
    fn start(config: &Path, addr: SocketAddr) -> Durable {
        let child = Command::new(SERVER)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < WAIT,
                "weir-server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Durable { child }
    }

    /// kill -9: the crash a durable store must survive.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with one durable queue in `dir/data`, on a free port.
fn config(dir: &TempDir, extra: &str) -> (PathBuf, SocketAddr) {
    let addr = free_addr();
    let data = dir.0.join("data");
    let text = format!(
        "listen = \"{addr}\"\ndata_dir = \"{}\"\nsegment_bytes = 4096\n{extra}\n\
         [[queues]]\nname = \"{QUEUE}\"\ndurable = true\n",
        data.display()
    );
    (dir.file("weir.toml", &text), addr)
}

/// Runs the server on `config` expecting it to refuse to start: its exit code and stderr.
fn refused(config: &Path) -> (Option<i32>, String) {
    let output = Command::new(SERVER)
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn start(from: u8, value: u64) -> Start {
    Start {
        from,
        value,
        first_position: 0,
        skipped: 0,
    }
}

/// Subscribes from `start` and reads what is replayed: (position, payload) pairs, until
/// `count` arrived or nothing more comes.
fn replay(addr: SocketAddr, from: Start, count: usize) -> (Start, Vec<(u64, String)>) {
    let mut client = Client::connect(addr, &client_options("reader")).unwrap();
    let answer = client.subscribe_all_from(QUEUE, from).unwrap();
    let mut got = Vec::new();
    while got.len() < count {
        match client.recv_timeout(Duration::from_millis(500)).unwrap() {
            Some(Event::Deliver(delivery)) => {
                got.push((
                    delivery.message_id,
                    String::from_utf8_lossy(&delivery.payload).into_owned(),
                ));
                client.ack(delivery.seq).unwrap();
            }
            Some(_) => {}
            None => break,
        }
    }
    (answer, got)
}

/// Publishes `payloads` and waits for their receipt (which, for a durable queue, means
/// fdatasynced).
fn publish_durably(addr: SocketAddr, payloads: impl IntoIterator<Item = String>) {
    let mut client = Client::connect(addr, &client_options("writer")).unwrap();
    let mut last = 0;
    for payload in payloads {
        last = client.publish(QUEUE, "e", payload).unwrap();
    }
    client.wait_receipt(last).unwrap();
}

fn segment_files(dir: &TempDir) -> Vec<PathBuf> {
    let queue = dir.0.join("data/queues").join(hex(QUEUE.as_bytes()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn durable_messages_survive_kill_9_and_subscribe_starts_at_a_position_the_oldest_or_the_last_n() {
    let dir = TempDir::new("durable-kill");
    let (path, addr) = config(&dir, "");
    let server = Durable::start(&path, addr);
    publish_durably(addr, (1..=100).map(|n| format!("m{n}")));
    server.kill();

    let server = Durable::start(&path, addr);
    let (answer, got) = replay(addr, start(START_OLDEST, 0), 100);
    assert_eq!((answer.first_position, answer.skipped), (1, 0));
    let expected: Vec<(u64, String)> = (1..=100).map(|n| (n, format!("m{n}"))).collect();
    assert_eq!(got, expected, "every receipted message, once, in order");
    let (answer, got) = replay(addr, start(START_LAST, 10), 100);
    assert_eq!(answer.first_position, 91);
    assert_eq!(got, expected[90..]);
    let (answer, got) = replay(addr, start(START_POSITION, 50), 100);
    assert_eq!(answer.first_position, 50);
    assert_eq!(got, expected[49..]);
    // New messages continue the positions.
    publish_durably(addr, ["m101".to_owned()]);
    let (_, got) = replay(addr, start(START_POSITION, 101), 10);
    assert_eq!(got, [(101, "m101".to_owned())]);
    drop(server);
}

#[test]
fn a_start_before_the_oldest_retained_message_is_answered_with_it_and_the_number_skipped() {
    let dir = TempDir::new("durable-retention");
    let (path, addr) = config(&dir, "");
    let text = std::fs::read_to_string(&path).unwrap() + "max_messages = 30\n";
    std::fs::write(&path, text).unwrap();
    let server = Durable::start(&path, addr);
    publish_durably(addr, (1..=100).map(|n| format!("m{n}")));
    let (answer, got) = replay(addr, start(START_POSITION, 1), 100);
    assert_eq!((answer.first_position, answer.skipped), (71, 70));
    assert_eq!(got.first().map(|g| g.0), Some(71));
    assert_eq!(got.len(), 30);
    server.kill();
    // Retention deleted whole segments only: what is left starts at a segment boundary at or
    // before 71, and a restart serves from what the files hold.
    let server = Durable::start(&path, addr);
    let (answer, got) = replay(addr, start(START_OLDEST, 0), 200);
    assert!(answer.first_position <= 71, "{answer:?}");
    assert_eq!(got.last().map(|g| g.0), Some(100));
    drop(server);
}

/// kill -9 at random moments while a publisher streams with receipts; after each restart the
/// publisher reads the queue's last message (START LAST 1) and goes on after it, so every
/// message is stored exactly once. Figures are printed; CI size `WEIR_DURABLE_KILLS` (20).
#[test]
fn kill_9_chaos_every_receipted_message_is_there_exactly_once_in_order() {
    let kills: u32 = std::env::var("WEIR_DURABLE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = TempDir::new("durable-chaos");
    let (path, addr) = config(&dir, "");
    let mut receipted_total = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _round in 0..kills {
        let server = Durable::start(&path, addr);
        // Where to go on: after the last stored message.
        let (_, last) = replay(addr, start(START_LAST, 1), 1);
        let mut next: u64 = last.first().map_or(1, |(_, p)| {
            p.trim_start_matches('m').parse::<u64>().unwrap() + 1
        });
        assert!(next > receipted_total, "a receipted message is missing");
        let pid = server.child.id();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(5 + seed % 60);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        });
        let Ok(mut client) = Client::connect(addr, &client_options("chaos")) else {
            killer.join().unwrap();
            server.kill();
            continue;
        };
        let base = next - 1;
        let mut sent_in_session = 0u64;
        'stream: loop {
            for _ in 0..20 {
                if client.publish(QUEUE, "e", format!("m{next}")).is_err() {
                    break 'stream;
                }
                next += 1;
                sent_in_session += 1;
            }
            if client.flush().is_err() {
                break;
            }
            loop {
                match client.recv_timeout(Duration::from_millis(1)) {
                    Ok(Some(Event::Receipt(seq))) => {
                        receipted_total = receipted_total.max(base + seq);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'stream,
                }
            }
            if sent_in_session > 50_000 {
                break;
            }
        }
        killer.join().unwrap();
        server.kill();
    }
    let server = Durable::start(&path, addr);
    let (_, got) = replay(addr, start(START_OLDEST, 0), usize::MAX);
    let numbers: Vec<u64> = got
        .iter()
        .map(|(_, p)| p.trim_start_matches('m').parse().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    eprintln!(
        "durable chaos: {kills} kills, {} messages stored, {receipted_total} receipted, 0 lost, \
         0 duplicated, 0 reordered",
        numbers.len()
    );
    assert!(
        numbers.len() as u64 >= receipted_total,
        "receipted messages lost"
    );
    assert_eq!(numbers, expected, "stored once each, in order");
    let positions: Vec<u64> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, expected, "positions are consecutive from 1");
    drop(server);
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_offset_of_the_last_record_and_no_partial_record_is_served() {
    let dir = TempDir::new("durable-torn");
    let (path, addr) = config(&dir, "");
    let server = Durable::start(&path, addr);
    publish_durably(addr, (1..=5).map(|n| format!("message {n}")));
    server.kill();
    let file = segment_files(&dir).pop().unwrap();
    let whole = std::fs::read(&file).unwrap();
    // Five equal records: the last one starts at 4/5 of the file.
    let record_len = whole.len() / 5;
    let mut cuts = 0;
    for cut in whole.len() - record_len..whole.len() {
        std::fs::write(&file, &whole[..cut]).unwrap();
        let server = Durable::start(&path, addr);
        let (_, got) = replay(addr, start(START_OLDEST, 0), 10);
        let payloads: Vec<String> = got.into_iter().map(|(_, p)| p).collect();
        let expected: Vec<String> = (1..=4).map(|n| format!("message {n}")).collect();
        assert_eq!(payloads, expected, "cut at byte {cut}");
        server.kill();
        assert_eq!(
            std::fs::metadata(&file).unwrap().len() as usize,
            whole.len() - record_len,
            "the torn tail was truncated (cut at byte {cut})"
        );
        cuts += 1;
    }
    eprintln!(
        "durable torn tail: {cuts} cut offsets, every complete record kept, 0 partial served"
    );
}

#[test]
fn flipped_bits_are_detected_and_never_delivered() {
    let dir = TempDir::new("durable-flip");
    let (path, addr) = config(&dir, "");
    let server = Durable::start(&path, addr);
    publish_durably(addr, (1..=5).map(|n| format!("message {n}")));
    server.kill();
    let file = segment_files(&dir).pop().unwrap();
    let whole = std::fs::read(&file).unwrap();
    let record_len = whole.len() / 5;
    let (mut refused_count, mut cut_count) = (0, 0);
    for offset in (0..whole.len()).step_by(7) {
        let mut flipped = whole.clone();
        flipped[offset] ^= 0x10;
        std::fs::write(&file, &flipped).unwrap();
        let record = offset / record_len;
        if record < 4 {
            // Records follow the bad one: corruption beyond the tail, the store is refused.
            let (code, stderr) = refused(&path);
            assert_eq!(code, Some(78), "byte {offset}: {stderr}");
            assert!(stderr.contains("corrupt beyond its tail"), "{stderr}");
            refused_count += 1;
        } else {
            // The last record: indistinguishable from a torn write, cut off, never served.
            let server = Durable::start(&path, addr);
            let (_, got) = replay(addr, start(START_OLDEST, 0), 10);
            assert_eq!(got.len(), 4, "byte {offset}");
            assert!(got.iter().all(|(_, p)| p.starts_with("message ")));
            server.kill();
            cut_count += 1;
        }
        std::fs::write(&file, &whole).unwrap();
    }
    eprintln!(
        "durable bit flips: {} flips, {refused_count} refused at start (exit 78), {cut_count} \
         in the last record cut off, 0 delivered",
        refused_count + cut_count
    );
}

#[test]
fn stores_that_cannot_be_trusted_are_refused_with_exit_78_and_a_message() {
    let dir = TempDir::new("durable-refuse");
    let (path, _) = config(&dir, "");
    let data = dir.0.join("data");

    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("VERSION"), "weir-store 2\n").unwrap();
    let (code, stderr) = refused(&path);
    assert_eq!(code, Some(78));
    assert!(
        stderr.contains("store version \"weir-store 2\""),
        "{stderr}"
    );

    std::fs::remove_file(data.join("VERSION")).unwrap();
    std::fs::write(data.join("something"), "else").unwrap();
    let (code, stderr) = refused(&path);
    assert_eq!(code, Some(78));
    assert!(stderr.contains("not a Weir store"), "{stderr}");

    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, "a file").unwrap();
    let (code, stderr) = refused(&path);
    assert_eq!(code, Some(78));
    assert!(stderr.contains("is not a directory"), "{stderr}");
    std::fs::remove_file(&data).unwrap();

    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&data.display().to_string(), "/nonexistent-weir/parent/data");
    std::fs::write(&path, text).unwrap();
    let (code, stderr) = refused(&path);
    assert_eq!(code, Some(78));
    assert!(stderr.contains("nor does its parent"), "{stderr}");

    let text = format!("[[queues]]\nname = \"{QUEUE}\"\ndurable = true\n");
    let (code, stderr) = refused(&dir.file("no-data-dir.toml", &text));
    assert_eq!(code, Some(78));
    assert!(stderr.contains("no data_dir"), "{stderr}");
}

#[test]
fn a_durable_publish_is_receipted_after_its_fsync_and_fsyncs_are_grouped() {
    let dir = TempDir::new("durable-group");
    let (path, addr) = config(&dir, "");
    let server = Durable::start(&path, addr);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                publish_durably(addr, (0..200).map(move |n| format!("w{w} {n}")));
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut admin = Client::connect(addr, &client_options("admin")).unwrap();
    let stats: weir::protocol::stats::StatsReport =
        serde_json::from_str(&admin.stats().unwrap()).unwrap();
    let server_stats = &stats.server;
    assert_eq!(server_stats.messages_journaled, 800);
    assert_eq!(
        server_stats.journal_synced_messages, 800,
        "every receipt waited for its sync"
    );
    assert!(server_stats.journal_fsyncs >= 1);
    eprintln!(
        "durable group commit: 800 messages from 4 publishers, {} fdatasyncs, {:.1} messages \
         per fdatasync",
        server_stats.journal_fsyncs,
        800.0 / server_stats.journal_fsyncs as f64
    );
    let queue = stats.queues.iter().find(|q| q.name == QUEUE).unwrap();
    assert!(queue.durable);
    assert_eq!((queue.retained, queue.next_position), (800, 801));
    drop(server);
}

/// A full disk (a 1 MiB tmpfs the test mounts, as root): durable publishes get
/// ERROR(STORAGE_FAILED) and no RECEIPT, other queues go on, and once there is room again
/// durable publishes are receipted and survive a restart. Skipped with a message when not root
/// outside CI.
#[test]
fn a_full_disk_refuses_durable_publishes_with_storage_failed_and_recovers_when_space_returns() {
    let dir = TempDir::new("durable-full");
    let mount_point = dir.0.join("small");
    std::fs::create_dir_all(&mount_point).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount_point)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: mount must work"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount_point.clone());
    let addr = free_addr();
    let text = format!(
        "listen = \"{addr}\"\ndata_dir = \"{}\"\nsegment_bytes = 65536\n\
         [[queues]]\nname = \"{QUEUE}\"\ndurable = true\n",
        mount_point.join("data").display()
    );
    let path = dir.file("weir.toml", &text);
    let server = Durable::start(&path, addr);
    let payload = "x".repeat(16 * 1024);
    let mut client = Client::connect(addr, &client_options("filler")).unwrap();
    let mut refused_at = None;
    let mut receipted = 0;
    for _ in 0..200 {
        let seq = match client.publish(QUEUE, "e", payload.as_str()) {
            Ok(seq) => seq,
            Err(_) => break,
        };
        match client.wait_receipt(seq) {
            Ok(()) => receipted = seq,
            Err(e) => {
                assert!(e.to_string().contains("STORAGE_FAILED"), "{e}");
                refused_at = Some(seq);
                break;
            }
        }
    }
    let refused_at = refused_at.expect("a 1 MiB disk fills up");
    // Non-durable traffic goes on.
    let mut other = Client::connect(addr, &client_options("other")).unwrap();
    let seq = other.publish("plain", "e", "still here").unwrap();
    other.wait_receipt(seq).unwrap();
    // Space returns.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(&mount_point)
        .status()
        .unwrap();
    assert!(grown.success());
    publish_durably(addr, ["after".to_owned()]);
    server.kill();
    let server = Durable::start(&path, addr);
    let (_, got) = replay(addr, start(START_OLDEST, 0), 1000);
    assert_eq!(
        got.len() as u64,
        receipted + 1,
        "every receipted message, and no refused one"
    );
    assert_eq!(got.last().map(|g| g.1.as_str()), Some("after"));
    eprintln!(
        "durable disk full: {receipted} receipted on 1 MiB, publish {refused_at} refused with \
         STORAGE_FAILED, plain queue unaffected, recovered after the tmpfs grew"
    );
    drop(server);
}

/// Issue 10: two servers on one data_dir would interleave records in the same segments.
#[test]
fn a_second_server_on_a_data_dir_in_use_is_refused_with_exit_78_and_the_first_goes_on() {
    let dir = TempDir::new("durable-lock");
    let (first_config, first_addr) = config(&dir, "");
    let first = Durable::start(&first_config, first_addr);
    publish_durably(first_addr, ["before".to_owned()]);

    let second_addr = free_addr();
    let text = std::fs::read_to_string(&first_config)
        .unwrap()
        .replace(&first_addr.to_string(), &second_addr.to_string());
    let second_config = dir.file("second.toml", &text);
    let (code, stderr) = refused(&second_config);
    assert_eq!(code, Some(78));
    assert!(stderr.contains("in use by another weir-server"), "{stderr}");
    assert!(stderr.contains("LOCK"), "{stderr}");

    publish_durably(first_addr, ["after".to_owned()]);
    // The lock goes with the process, even on kill -9: the next server starts.
    first.kill();
    let again = Durable::start(&second_config, second_addr);
    let (_, messages) = replay(second_addr, start(START_OLDEST, 0), 2);
    let payloads: Vec<&str> = messages.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(payloads, ["before", "after"]);
    drop(again);
}
