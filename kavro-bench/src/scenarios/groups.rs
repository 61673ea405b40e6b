//! `groups`: what a Kavro v2 group message costs the relay next to a v1 send.
//!
//! One run, two phases at the same `--rate` and `--duration`, on the same
//! relay: first v1 sends with long-poll delivery (the `delivery` scenario),
//! then v2: every user gets a device (an openmls signature key, a device
//! link-free root registration, a device session), users form groups of
//! `--group-size` devices (real MLS groups: key packages, an add commit, a
//! welcome), and each group's creator sends real MLS application messages
//! while every other member long-polls its queue and acknowledges. Latency
//! is post-start to queue arrival, on this process's clock (matched by the
//! stored message id). With `--server-pid`, the relay's CPU time per v1 send
//! and per group message comes from `/proc`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::StreamExt as _;
use kavro_proto::UserId;
use kavro_proto::v2::link::session_message;
use kavro_proto::v2::{GroupId, MlsDeviceId};
use kavro_proto::validate::base64_encode;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer as _;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::{Instance, authed, bearer, exchange};
use crate::scenarios::{Ctx, Outcome, Pacer, back_off};
use crate::stats::{Recorder, Window, micros};
use crate::sysinfo::{Monitor, cpu_percent};

pub const GROUP_SEND: &str = "group-send";
pub const GROUP_DELIVERY: &str = "group-delivery";
pub const QUEUE_POLL: &str = "queue-poll";
pub const QUEUE_ACK: &str = "queue-ack";
const OPS: [&str; 4] = [GROUP_SEND, GROUP_DELIVERY, QUEUE_POLL, QUEUE_ACK];
const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
const DRAIN: Duration = Duration::from_secs(10);

/// One benchmark device: its MLS identity and its device token.
struct Device {
    user: UserId,
    name: String,
    id: MlsDeviceId,
    auth: HeaderValue,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

#[derive(Deserialize)]
struct Page {
    messages: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    seq: i64,
    id: i64,
}

fn url(instance: &Instance, path: &str) -> anyhow::Result<reqwest::Url> {
    let base = format!("{}/", instance.url);
    Ok(reqwest::Url::parse(&base)?.join(path.trim_start_matches('/'))?)
}

async fn post(
    instance: &Instance,
    auth: &HeaderValue,
    path: &str,
    body: &Value,
    expect: u16,
) -> anyhow::Result<Value> {
    let request = authed(
        instance.post(url(instance, path)?, Bytes::from(serde_json::to_vec(body)?)),
        auth,
    );
    let answer = exchange(request, expect)
        .await
        .map_err(|f| anyhow::anyhow!("POST {path}: {f:?}"))?;
    Ok(serde_json::from_slice(&answer)?)
}

/// Registers a root device for `user` and opens its session.
async fn device(instance: &Instance, user: &crate::setup::BenchUser) -> anyhow::Result<Device> {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SUITE.signature_algorithm())?;
    signer.store(provider.storage())?;
    let credential = CredentialWithKey {
        credential: BasicCredential::new(user.name.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let registered = post(
        instance,
        &user.auth,
        "v2/devices",
        &json!({"signature_key": base64_encode(signer.public())}),
        201,
    )
    .await?;
    let id = MlsDeviceId(registered["id"].as_i64().context("device id")?);
    // The proof is checked against the relay's clock (±5 min): ours is close.
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .try_into()?;
    let proof = signer
        .sign(&session_message(user.id, id, timestamp))
        .map_err(|e| anyhow::anyhow!("signing the session proof: {e:?}"))?;
    let session = post(
        instance,
        &user.auth,
        &format!("v2/devices/{id}/session"),
        &json!({"timestamp": timestamp, "signature": base64_encode(&proof)}),
        201,
    )
    .await?;
    let token = session["access_token"].as_str().context("device token")?;
    Ok(Device {
        user: user.id,
        name: user.name.clone(),
        id,
        auth: bearer(token)?,
        provider,
        signer,
        credential,
    })
}

/// A group: its creator (the sender) with its MLS state, and its members.
struct Group {
    id: GroupId,
    creator: Device,
    mls: MlsGroup,
    members: Vec<Device>,
}

async fn form_group(
    instance: &Instance,
    creator: Device,
    members: Vec<Device>,
) -> anyhow::Result<Group> {
    for member in &members {
        let package = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(24 * 3600))
            .build(
                SUITE,
                &member.provider,
                &member.signer,
                member.credential.clone(),
            )?;
        let bytes = package.key_package().tls_serialize_detached()?;
        post(
            instance,
            &member.auth,
            &format!("v2/devices/{}/key-packages", member.id),
            &json!({"key_packages": [base64_encode(&bytes)]}),
            201,
        )
        .await?;
    }
    let mut mls = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &MlsGroupCreateConfig::default(),
        creator.credential.clone(),
    )?;
    let id = GroupId::from_bytes(mls.group_id().as_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    post(
        instance,
        &creator.auth,
        "v2/groups",
        &json!({"group_id": id.to_text()}),
        201,
    )
    .await?;
    let mut packages = Vec::new();
    let mut added = Vec::new();
    for member in &members {
        let claimed = post(
            instance,
            &creator.auth,
            &format!("v2/users/{}/key-packages/claim", member.name),
            &json!({}),
            200,
        )
        .await?;
        let entry = &claimed["key_packages"][0];
        let bytes = kavro_proto::validate::base64_strict(
            entry["key_package"].as_str().context("key package")?,
        )
        .context("base64")?;
        packages.push(
            KeyPackageIn::tls_deserialize_exact(&bytes)?
                .validate(creator.provider.crypto(), ProtocolVersion::Mls10)?,
        );
        added.push(entry["device_id"].as_i64().context("device id")?);
    }
    let (commit, welcome, _) = mls.add_members(&creator.provider, &creator.signer, &packages)?;
    post(
        instance,
        &creator.auth,
        &format!("v2/groups/{}/commits", id.to_text()),
        &json!({"epoch": 0, "commit": base64_encode(&commit.tls_serialize_detached()?), "added": added, "welcome": base64_encode(&welcome.tls_serialize_detached()?)}),
        201,
    )
    .await?;
    mls.merge_pending_commit(&creator.provider)?;
    let _ = creator.user;
    Ok(Group {
        id,
        creator,
        mls,
        members,
    })
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    arrived: AtomicU64,
}

/// Runs the v1 phase, then the v2 phase; both figures go into one outcome.
pub async fn run(
    ctx: Ctx,
    group_size: usize,
    (wait, separate_acks): (u32, bool),
    monitor: &Monitor,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let instance = ctx.instances[0].clone();
    // Phase 1: v1 sends with long-poll delivery, at the same rate.
    let v1_window = Window::new(Instant::now(), warmup, duration);
    let v1_ctx = Ctx {
        window: v1_window,
        ..ctx.clone()
    };
    let receivers = (ctx.users.len() / 2).max(1);
    let at_measure = tokio::spawn(snapshot_at(
        v1_window.measure_from,
        Monitor::new(monitor.pids().to_vec()),
    ));
    let v1 = super::delivery::run(v1_ctx, receivers, wait).await;
    let v1_end = monitor.snapshot();
    let v1_start = at_measure.await?;
    let v1_sent = v1
        .recorder
        .get(super::delivery::SEND)
        .map_or(0, crate::stats::OpStats::count);

    // Phase 2 setup: devices and groups (not measured).
    eprintln!(
        "v2: registering {} devices and forming groups of {group_size}…",
        ctx.users.len()
    );
    let groups_n = ctx.users.len() / group_size;
    let devices: Vec<Device> = futures_util::stream::iter(&ctx.users[..groups_n * group_size])
        .map(|user| device(&instance, user))
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut devices = devices.into_iter();
    let mut groups = Vec::new();
    for _ in 0..groups_n {
        let creator = devices.next().context("devices")?;
        let members: Vec<Device> = devices.by_ref().take(group_size - 1).collect();
        groups.push(form_group(&instance, creator, members).await?);
    }
    if groups.is_empty() {
        bail!("no group: --users must be at least --group-size");
    }

    // Phase 2: each creator sends; every member long-polls and acks.
    let window = Window::new(Instant::now(), warmup, duration);
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let mut receiving = Vec::new();
    let mut sending = Vec::new();
    let tasks = groups.len();
    let at_measure = tokio::spawn(snapshot_at(
        window.measure_from,
        Monitor::new(monitor.pids().to_vec()),
    ));
    for (task, group) in groups.into_iter().enumerate() {
        for member in group.members {
            receiving.push(tokio::spawn(receive(
                instance.clone(),
                member,
                window,
                (wait, separate_acks),
                counts.clone(),
                stop.clone(),
            )));
        }
        let sender = Sender {
            creator: group.creator,
            mls: group.mls,
            id: group.id,
        };
        sending.push(tokio::spawn(send(
            instance.clone(),
            sender,
            window,
            Pacer::new(ctx.rate, tasks, task),
            ctx.message_bytes,
            counts.clone(),
        )));
    }
    let sent: Vec<(Recorder, Vec<(i64, u64)>)> = super::join(sending).await;
    let v2_end = monitor.snapshot();
    let v2_start = at_measure.await?;
    let expected = counts.sent.load(Ordering::Relaxed) * (group_size as u64 - 1);
    let drain = Instant::now();
    while counts.arrived.load(Ordering::Relaxed) < expected && drain.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let received: Vec<(Recorder, Vec<(i64, u64)>)> = super::join(receiving).await;

    let mut recorder = Recorder::with_ops(&OPS);
    let mut sent_at: HashMap<i64, u64> = HashMap::new();
    for (part, stamps) in &sent {
        recorder.merge(part);
        sent_at.extend(stamps.iter().copied());
    }
    let measured_from = micros(window.measure_from - window.start);
    let mut arrivals = 0u64;
    for (part, stamps) in &received {
        recorder.merge(part);
        // Only the benchmark's messages (not the welcomes of the setup).
        for (id, arrived) in stamps {
            let Some(sent) = sent_at.get(id) else {
                continue;
            };
            arrivals += 1;
            if *sent >= measured_from {
                recorder
                    .op(GROUP_DELIVERY)
                    .record_micros(arrived.saturating_sub(*sent));
            }
        }
    }
    let group_sent = recorder
        .get(GROUP_SEND)
        .map_or(0, crate::stats::OpStats::count);

    let mut outcome = Outcome::merge(
        &[(v1.recorder, v1.finished), (recorder, Instant::now())],
        &[],
    );
    let f = &mut outcome.figures;
    f.insert("v1".into(), Value::Object(v1.figures));
    f.insert("groups".into(), json!(tasks));
    f.insert("group_size".into(), json!(group_size));
    f.insert(
        "group_messages_sent".into(),
        json!(counts.sent.load(Ordering::Relaxed)),
    );
    f.insert("group_deliveries_expected".into(), json!(expected));
    f.insert("group_deliveries".into(), json!(arrivals));
    let seconds = duration.as_secs_f64();
    f.insert("v1_sends_per_s".into(), json!(v1_sent as f64 / seconds));
    f.insert(
        "group_messages_per_s".into(),
        json!(group_sent as f64 / seconds),
    );
    let cpu_us = |from, to: &crate::sysinfo::Snapshot, ops: u64| -> Option<f64> {
        let pct: f64 = cpu_percent(from, to).iter().flatten().sum();
        let secs = to.at.duration_since(from.at).as_secs_f64();
        (ops > 0 && pct > 0.0).then(|| pct / 100.0 * secs / ops as f64 * 1e6)
    };
    let v1_cost = cpu_us(&v1_start, &v1_end, v1_sent);
    let v2_cost = cpu_us(&v2_start, &v2_end, group_sent);
    f.insert("relay_cpu_us_per_v1_send".into(), json!(v1_cost));
    f.insert("relay_cpu_us_per_group_message".into(), json!(v2_cost));
    f.insert(
        "group_message_cost_in_v1_sends".into(),
        json!(v1_cost.zip(v2_cost).map(|(a, b)| b / a)),
    );
    Ok(outcome)
}

async fn snapshot_at(at: Instant, monitor: Monitor) -> crate::sysinfo::Snapshot {
    tokio::time::sleep_until(at.into()).await;
    monitor.snapshot()
}

struct Sender {
    creator: Device,
    mls: MlsGroup,
    id: GroupId,
}

/// Sends real MLS application messages; returns (message id, send time) pairs.
async fn send(
    instance: Instance,
    mut sender: Sender,
    window: Window,
    mut pacer: Pacer,
    bytes: usize,
    counts: Arc<Counts>,
) -> (Recorder, Vec<(i64, u64)>) {
    let mut recorder = Recorder::with_ops(&[GROUP_SEND]);
    let mut stamps = Vec::new();
    let Ok(path) = url(
        &instance,
        &format!("v2/groups/{}/messages", sender.id.to_text()),
    ) else {
        return (recorder, stamps);
    };
    let text = vec![b'x'; bytes];
    loop {
        pacer.wait().await;
        if !window.open() {
            break;
        }
        let Ok(message) =
            sender
                .mls
                .create_message(&sender.creator.provider, &sender.creator.signer, &text)
        else {
            break;
        };
        let Ok(body) = message.tls_serialize_detached() else {
            break;
        };
        let body = Bytes::from(json!({"message": base64_encode(&body)}).to_string());
        let started = Instant::now();
        let result = exchange(
            authed(instance.post(path.clone(), body), &sender.creator.auth),
            201,
        )
        .await;
        recorder.op(GROUP_SEND).outcome(&window, started, &result);
        match result {
            Ok(answer) => {
                if let Some(id) = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v["id"].as_i64())
                {
                    stamps.push((id, micros(started - window.start)));
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(failure) => back_off(&failure).await,
        }
    }
    (recorder, stamps)
}

/// Long-polls one device's queue and acknowledges what it read: on the next
/// read (`ack=`), or with `separate_acks` by a `POST …/queue/ack` after each
/// page. Returns (message id, arrival time) pairs.
async fn receive(
    instance: Instance,
    device: Device,
    window: Window,
    (wait, separate_acks): (u32, bool),
    counts: Arc<Counts>,
    stop: CancellationToken,
) -> (Recorder, Vec<(i64, u64)>) {
    let mut recorder = Recorder::with_ops(&[QUEUE_POLL, QUEUE_ACK]);
    let mut stamps = Vec::new();
    let mut after = 0i64;
    // What the relay has been told (on a read that succeeded).
    let mut acked = 0i64;
    let Ok(ack) = url(&instance, &format!("v2/devices/{}/queue/ack", device.id)) else {
        return (recorder, stamps);
    };
    while !stop.is_cancelled() {
        let ack_now = (!separate_acks && after > acked).then_some(after);
        let ack_param = ack_now.map(|n| format!("&ack={n}")).unwrap_or_default();
        let Ok(poll) = url(
            &instance,
            &format!(
                "v2/devices/{}/queue?after={after}&limit=500&wait={wait}{ack_param}",
                device.id
            ),
        ) else {
            break;
        };
        let started = Instant::now();
        let request = authed(instance.get(poll), &device.auth);
        let result = tokio::select! {
            result = exchange(request, 200) => result,
            () = stop.cancelled() => break,
        };
        let arrived = micros(window.start.elapsed());
        if result.is_ok() && window.measured(started) {
            recorder.op(QUEUE_POLL).record(started.elapsed());
        }
        let page = match result.and_then(|body| super::parse::<Page>(&body)) {
            Ok(page) => page,
            Err(failure) => {
                recorder
                    .op(QUEUE_POLL)
                    .fail(&failure, window.measured(started));
                back_off(&failure).await;
                continue;
            }
        };
        if let Some(n) = ack_now {
            acked = n;
        }
        // The welcome (from setup) is not a measured message.
        for entry in &page.messages {
            stamps.push((entry.id, arrived));
            after = after.max(entry.seq);
        }
        let fresh = page.messages.len() as u64;
        counts.arrived.fetch_add(fresh, Ordering::Relaxed);
        if fresh == 0 || !separate_acks {
            continue;
        }
        let started = Instant::now();
        let body = Bytes::from(json!({"up_to": after}).to_string());
        let result = exchange(authed(instance.post(ack.clone(), body), &device.auth), 200).await;
        recorder.op(QUEUE_ACK).outcome(&window, started, &result);
    }
    (recorder, stamps)
}
