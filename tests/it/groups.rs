//! Competing consumers over real TCP (issue #14): a pool of workers shares a queue's jobs,
//! a killed worker's unacked jobs reach the others, a job nobody acks is dead-lettered.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use weir::client::{Client, ClientOptions, Event};
use weir::config::QueueConfig;
use weir::Config;

use crate::common::{client_options, plain, TestServer};

const JOBS: &str = "jobs";
const DEAD: &str = "jobs.dead";

fn server() -> TestServer {
    let mut config = Config {
        // A killed worker's session ends with its connection: its jobs move on at once.
        reconnect_keep_alive_ms: 0,
        max_queue_depth: 200_000,
        max_queue_bytes: 256 * 1024 * 1024,
        ..Config::default()
    };
    config.queues.push(QueueConfig {
        ack_deadline_ms: 300,
        max_deliveries: 3,
        dead_letter_queue: Some(DEAD.to_owned()),
        ..QueueConfig::new(JOBS)
    });
    TestServer::with_config(config)
}

fn worker_client(addr: SocketAddr, name: &str, window: u32) -> Client {
    let options = ClientOptions {
        extensions: true,
        inflight_window: window,
        ..client_options(name)
    };
    let mut client = Client::connect(addr, &options).expect("worker connects");
    client
        .subscribe_group(JOBS, None, "workers")
        .expect("joins the group");
    client
}

/// What one worker saw: (job, delivery_count) per delivery it acked.
type Done = Vec<(u32, Option<u16>)>;

/// A worker that acks every job (cumulatively, in batches) until `stop`.
fn spawn_worker(mut client: Client, stop: Arc<AtomicBool>) -> JoinHandle<Done> {
    std::thread::spawn(move || {
        let mut done = Vec::new();
        let mut unacked = 0;
        let mut last_seq = 0;
        while !stop.load(Ordering::Relaxed) {
            match client
                .recv_timeout(Duration::from_millis(20))
                .expect("recv")
            {
                Some(Event::Deliver(delivery)) => {
                    let job: u32 = std::str::from_utf8(&delivery.payload)
                        .unwrap()
                        .parse()
                        .unwrap();
                    done.push((job, delivery.delivery_count));
                    last_seq = delivery.seq;
                    unacked += 1;
                    if unacked >= 64 {
                        client.ack(last_seq).expect("ack");
                        unacked = 0;
                    }
                }
                Some(_) => {}
                None if unacked > 0 => {
                    client.ack(last_seq).expect("ack");
                    unacked = 0;
                }
                None => {}
            }
        }
        done
    })
}

fn publish_jobs(addr: SocketAddr, count: u32) {
    let mut publisher = plain(addr, "producer");
    let mut last = 0;
    for job in 0..count {
        last = publisher.publish(JOBS, "job", job.to_string()).unwrap();
    }
    publisher.wait_receipt(last).unwrap();
}

#[test]
fn three_workers_process_100_000_jobs_each_exactly_once() {
    const COUNT: u32 = 100_000;
    let server = server();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let client = worker_client(server.addr, &format!("worker-{i}"), 0);
            spawn_worker(client, Arc::clone(&stop))
        })
        .collect();
    publish_jobs(server.addr, COUNT);
    server.wait_for("every job acked", |s| {
        s.groups
            .first()
            .is_some_and(|g| g.acked == u64::from(COUNT))
    });
    stop.store(true, Ordering::Relaxed);
    let done: Vec<Done> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let counts: Vec<usize> = done.iter().map(Vec::len).collect();
    println!("100,000 jobs over 3 workers: {counts:?} each");
    let mut seen = HashSet::new();
    for (job, count) in done.iter().flatten() {
        assert!(seen.insert(*job), "job {job} processed twice");
        assert_eq!(*count, None, "no redelivery when every worker acks in time");
    }
    assert_eq!(seen.len(), COUNT as usize, "every job processed");
    assert!(
        counts.iter().all(|&n| n > 0),
        "every worker got work: {counts:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.server.messages_group_redelivered, 0);
    assert_eq!(stats.server.stored_messages, 0);
}

#[test]
fn a_killed_workers_unacked_jobs_reach_the_others_flagged_with_their_count() {
    const COUNT: u32 = 10_000;
    let server = server();
    // The victim joins first and takes its window of 100 jobs, never acking.
    let mut victim = worker_client(server.addr, "victim", 100);
    publish_jobs(server.addr, COUNT);
    let mut victim_jobs = HashSet::new();
    while victim_jobs.len() < 100 {
        if let Event::Deliver(d) = victim.recv().unwrap() {
            victim_jobs.insert(
                std::str::from_utf8(&d.payload)
                    .unwrap()
                    .parse::<u32>()
                    .unwrap(),
            );
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let client = worker_client(server.addr, &format!("worker-{i}"), 0);
            spawn_worker(client, Arc::clone(&stop))
        })
        .collect();
    // Killed mid-stream: the socket closes without BYE or ACK.
    drop(victim);
    server.wait_for("every job acked by the survivors", |s| {
        s.groups
            .first()
            .is_some_and(|g| g.acked == u64::from(COUNT))
    });
    stop.store(true, Ordering::Relaxed);
    let done: Vec<(u32, Option<u16>)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let mut seen = HashSet::new();
    for &(job, count) in &done {
        assert!(seen.insert(job), "job {job} acked twice");
        let expected = victim_jobs.contains(&job).then_some(2);
        assert_eq!(count, expected, "job {job}'s delivery count");
    }
    assert_eq!(seen.len(), COUNT as usize, "nothing lost");
    let stats = server.stats();
    println!(
        "killed worker held {}; redelivered {}; survivors acked {}",
        victim_jobs.len(),
        stats.server.messages_group_redelivered,
        done.len()
    );
    assert_eq!(stats.server.messages_group_redelivered, 100);
    assert_eq!(stats.server.stored_messages, 0);
}

#[test]
fn a_job_every_member_refuses_lands_in_the_dead_letter_queue() {
    let server = server();
    let mut dead_letters = plain(server.addr, "dead-letters");
    dead_letters.subscribe_all(DEAD).unwrap();
    let mut refusers: Vec<Client> = (0..2)
        .map(|i| worker_client(server.addr, &format!("refuser-{i}"), 1))
        .collect();
    publish_jobs(server.addr, 1);
    // Each refuser reads what it is given and never acks; deadlines pass (300 ms, 3 times).
    let mut deliveries = Vec::new();
    let stats = loop {
        for refuser in &mut refusers {
            if let Some(Event::Deliver(d)) =
                refuser.recv_timeout(Duration::from_millis(10)).unwrap()
            {
                deliveries.push(d.delivery_count);
            }
        }
        let stats = server.stats();
        if stats.server.messages_dead_lettered == 1 {
            break stats;
        }
    };
    assert_eq!(
        deliveries,
        [None, Some(2), Some(3)],
        "three deliveries, counted"
    );
    let Event::Deliver(dead) = dead_letters.recv().unwrap() else {
        panic!("expected the dead letter");
    };
    assert_eq!(
        (&dead.queue[..], &dead.payload[..]),
        (DEAD.as_bytes(), &b"0"[..])
    );
    assert_eq!(stats.groups[0].dead_lettered, 1);
    assert_eq!(stats.server.messages_dropped_max_deliveries, 0);
}
