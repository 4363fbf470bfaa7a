//! What a `--timeline` file says of its episodes, for the lab tests that check it against
//! the same run's recording and `/metrics`' exemplars (read through the binary's own
//! trace-event types).

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use probe_user::timeline::trace::{TraceEvent, TraceFile, cat};
use serde_json::Value;

use crate::labtest::{EpisodePath, Recording, family};

/// What the timeline says of one episode: its thread, holder, and its values by exemplar
/// family.
pub struct Drawn {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The holder the last attempt that read one found (`comm[tid]`), as exemplars name it.
    pub holder: Option<String>,
    pub values_s: HashMap<&'static str, f64>,
}

pub fn arg_u64(e: &TraceEvent, k: &str) -> Result<u64> {
    e.args
        .get(k)
        .and_then(Value::as_u64)
        .with_context(|| format!("a {} slice without {k}: {e:?}", e.cat))
}

pub fn episodes(f: &TraceFile) -> Result<HashMap<u64, Drawn>> {
    let names: HashMap<(u32, u32), String> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "M" && e.name == "thread_name")
        .filter_map(|e| Some(((e.pid, e.tid), e.args.get("name")?.as_str()?.to_string())))
        .collect();
    let mut out: HashMap<u64, Drawn> = HashMap::new();
    for e in f
        .trace_events
        .iter()
        .filter(|e| e.ph == "X" && e.cat == cat::EPISODE)
    {
        let name = names.get(&(e.pid, e.tid)).context("an unnamed track")?;
        let comm = name.rsplit_once('[').map_or(name.as_str(), |(c, _)| c);
        let mut values_s = HashMap::new();
        // Unfinished episodes (retry-no-handler) have no latency and no exemplar.
        if let Some(ns) = e.args.get("latency_ns").and_then(Value::as_u64) {
            values_s.insert(family::EPISODE_DURATION, ns as f64 / 1e9);
        }
        out.insert(
            arg_u64(e, "episode")?,
            Drawn {
                pid: e.pid,
                tid: e.tid,
                comm: comm.to_string(),
                holder: None,
                values_s,
            },
        );
    }
    let mut attempts: Vec<&TraceEvent> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "X" && e.cat == cat::ATTEMPT)
        .collect();
    attempts.sort_by_key(|e| arg_u64(e, "attempt").unwrap_or(0));
    for e in attempts {
        let id = arg_u64(e, "episode")?;
        let d = out
            .get_mut(&id)
            .with_context(|| format!("attempt of episode {id}, which has no episode slice"))?;
        for (family, key) in [
            (family::WAIT_HELD, "wait_held_ns"),
            (family::COLLATERAL_STALL, "collateral_ns"),
        ] {
            *d.values_s.entry(family).or_insert(0.0) += arg_u64(e, key)? as f64 / 1e9;
        }
        if let Some(h) = e.args.get("holder").and_then(Value::as_str) {
            d.holder = Some(h.to_string());
        }
    }
    Ok(out)
}

/// The recording's slowest episodes are episodes of the timeline, with its values.
pub fn slowest_are_on_the_timeline(rec: &Recording, drawn: &HashMap<u64, Drawn>) -> Result<()> {
    ensure!(
        !rec.slowest_episodes.is_empty(),
        "serve's recording names no slowest episode"
    );
    let mut checked = 0;
    for s in &rec.slowest_episodes {
        let Some(d) = drawn.get(&s.episode) else {
            // An uncontended episode the probes sent one by one (not counted in the kernel)
            // has an id but is left out of the timeline as uncontended.
            ensure!(
                s.path == EpisodePath::Uncontended.name(),
                "the recording's slowest episode {} ({}) is not on the timeline",
                s.episode,
                s.path
            );
            continue;
        };
        checked += 1;
        ensure!(
            (d.pid, d.tid, d.comm.as_str()) == (s.tgid, s.tid, s.comm.as_str())
                && d.holder == s.holder,
            "episode {}: {}[{}] pid {} holder {:?} on the timeline, {}[{}] pid {} holder {:?} \
             in the recording",
            s.episode,
            d.comm,
            d.tid,
            d.pid,
            d.holder,
            s.comm,
            s.tid,
            s.tgid,
            s.holder
        );
        let latency = d.values_s.get(family::EPISODE_DURATION).copied();
        ensure!(
            latency == Some(s.latency_ns as f64 / 1e9),
            "episode {}: latency {latency:?} s on the timeline, {} ns in the recording",
            s.episode,
            s.latency_ns
        );
    }
    eprintln!(
        "recording: {} slowest episodes, {checked} of them contended and on the timeline",
        rec.slowest_episodes.len()
    );
    ensure!(
        checked > 0,
        "no slowest episode of the recording was contended"
    );
    Ok(())
}
