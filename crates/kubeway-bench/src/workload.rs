//! The workloads, each run by a client that connects to a local TCP address (so every contender
//! is measured the same way): one-connection throughput through the blob server (`source N`
//! down, `sink` up), sequential short-connection latency and concurrent hash-checked echoes
//! through the echo server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The multiplier of the lab's blob `source` pattern (`kubeway_lab::images::pattern`).
const PATTERN_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Byte `offset` of the blob server's `source` stream.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(PATTERN_MUL) >> 56) as u8
}

/// Deterministic pseudo-random bytes (xorshift), different for each `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = (seed + 1).wrapping_mul(PATTERN_MUL);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One timed bulk transfer.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time, from connect to the last byte (download) or to the server's checksum (upload).
    pub seconds: f64,
    /// MiB per second.
    pub mib_per_s: f64,
}

impl Throughput {
    fn new(bytes: u64, took: Duration) -> Self {
        let seconds = took.as_secs_f64();
        Self {
            bytes,
            seconds,
            mib_per_s: bytes as f64 / (1024.0 * 1024.0) / seconds.max(1e-9),
        }
    }
}

/// Downloads `n` bytes through one connection (`source N`), checking the length and a sample
/// of the bytes (the first and last byte of every read) against the server's pattern.
pub async fn download(addr: SocketAddr, n: u64) -> anyhow::Result<Throughput> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.write_all(format!("source {n}\n").as_bytes())
        .await
        .context("sending the source command")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < n {
        let k = s
            .read(&mut buf)
            .await
            .with_context(|| format!("reading after {got} of {n} bytes"))?;
        if k == 0 {
            bail!("the stream ended after {got} of {n} bytes");
        }
        let last = got + k as u64 - 1;
        ensure!(
            buf[0] == pattern_byte(got) && buf[k - 1] == pattern_byte(last),
            "wrong bytes at offset {got}..={last}: the stream is corrupted or reordered"
        );
        got += k as u64;
    }
    let took = start.elapsed();
    ensure!(
        got == n,
        "received {got} bytes, more than the {n} asked for"
    );
    Ok(Throughput::new(n, took))
}

/// What an upload sends: a block repeated to `len` bytes, with its SHA-256 computed up front so
/// hashing stays out of the timed section.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    block: Vec<u8>,
    len: u64,
    sha256_hex: String,
}

impl UploadPlan {
    /// Builds the plan for `len` bytes.
    pub fn new(len: u64) -> Self {
        let block = payload(0xB10B, 1 << 20);
        let mut h = Sha256::new();
        let mut left = len;
        while left > 0 {
            let k = left.min(block.len() as u64) as usize;
            h.update(&block[..k]);
            left -= k as u64;
        }
        Self {
            block,
            len,
            sha256_hex: hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Uploads the plan's bytes through one connection (`sink N`, length-prefixed, so no
/// half-close is needed: container runtimes do not pass one on) and checks the server's
/// `N sha256` answer.
pub async fn upload(addr: SocketAddr, plan: &UploadPlan) -> anyhow::Result<Throughput> {
    let start = Instant::now();
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    let (rd, mut wr) = s.into_split();
    wr.write_all(format!("sink {}\n", plan.len).as_bytes())
        .await
        .context("sending the sink command")?;
    let mut left = plan.len;
    while left > 0 {
        let k = left.min(plan.block.len() as u64) as usize;
        wr.write_all(&plan.block[..k])
            .await
            .with_context(|| format!("writing after {} bytes", plan.len - left))?;
        left -= k as u64;
    }
    let mut line = String::new();
    BufReader::new(rd)
        .read_line(&mut line)
        .await
        .context("reading the sink's answer")?;
    let took = start.elapsed();
    let want = format!("{} {}", plan.len, plan.sha256_hex);
    ensure!(
        line.trim() == want,
        "the sink answered {:?}, expected {want:?}",
        line.trim()
    );
    drop(wr);
    Ok(Throughput::new(plan.len, took))
}

/// Sequential short-connection latencies.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Connections attempted (after warm-up).
    pub connections: usize,
    /// Connections that failed.
    pub errors: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// The first few failures.
    pub error_samples: Vec<String>,
}

/// Connect, send one byte, read it back, close.
async fn one_roundtrip(addr: SocketAddr, byte: u8) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).await.context("connecting")?;
    s.set_nodelay(true)?;
    s.write_all(&[byte]).await.context("writing")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.context("reading the echo")?;
    ensure!(
        b[0] == byte,
        "echo answered {:#04x}, sent {byte:#04x}",
        b[0]
    );
    Ok(())
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `warmup` untimed then `n` timed short connections one after another. Gives up after
/// ten failures in a row (the contender is dead).
pub async fn latency(
    addr: SocketAddr,
    n: usize,
    warmup: usize,
    per_op: Duration,
) -> anyhow::Result<Latency> {
    for i in 0..warmup {
        tokio::time::timeout(per_op, one_roundtrip(addr, i as u8))
            .await
            .map_err(|_| anyhow::anyhow!("warm-up connection {i} timed out after {per_op:?}"))?
            .with_context(|| format!("warm-up connection {i}"))?;
    }
    let mut ms = Vec::with_capacity(n);
    let mut errors = 0;
    let mut in_a_row = 0;
    let mut samples = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let r = match tokio::time::timeout(per_op, one_roundtrip(addr, (i % 251) as u8)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("timed out after {per_op:?}")),
        };
        match r {
            Ok(()) => {
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                in_a_row = 0;
            }
            Err(e) => {
                errors += 1;
                in_a_row += 1;
                if samples.len() < 5 {
                    samples.push(format!("connection {i}: {e:#}"));
                }
                if in_a_row >= 10 {
                    bail!(
                        "10 connections in a row failed (after {i} of {n}); first failures: {}",
                        samples.join("; ")
                    );
                }
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    Ok(Latency {
        connections: n,
        errors,
        p50_ms: percentile(&ms, 50.0),
        p99_ms: percentile(&ms, 99.0),
        mean_ms: mean,
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        error_samples: samples,
    })
}

/// Concurrent hash-checked echoes.
#[derive(Debug, Clone, Serialize)]
pub struct Concurrency {
    /// Connections opened at once.
    pub connections: usize,
    /// Bytes each sends and expects back.
    pub bytes_each: usize,
    /// Connections that failed (error, timeout or wrong bytes).
    pub errors: usize,
    /// Wall time until every connection finished.
    pub seconds: f64,
    /// Median time for the client's TCP connect to the local port, milliseconds.
    pub connect_p50_ms: f64,
    /// Slowest client TCP connect, milliseconds.
    pub connect_max_ms: f64,
    /// Median time from the start until a connection had its echo back, milliseconds.
    pub done_p50_ms: f64,
    /// 99th percentile of the same.
    pub done_p99_ms: f64,
    /// The first few failures.
    pub error_samples: Vec<String>,
}

/// Writes `data` while reading as many bytes back; returns their SHA-256. Does not half-close
/// (so transports without half-close, like v4, can run it too).
async fn echo_hash(addr: SocketAddr, data: Vec<u8>) -> anyhow::Result<([u8; 32], Duration)> {
    let t = Instant::now();
    let s = TcpStream::connect(addr).await.context("connecting")?;
    let connected = t.elapsed();
    s.set_nodelay(true)?;
    let (mut rd, mut wr) = s.into_split();
    let len = data.len();
    let writer = tokio::spawn(async move { wr.write_all(&data).await.map(|()| wr) });
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < len {
        let want = buf.len().min(len - got);
        let k = rd
            .read(&mut buf[..want])
            .await
            .with_context(|| format!("reading after {got} of {len} bytes"))?;
        if k == 0 {
            bail!("the echo ended after {got} of {len} bytes");
        }
        h.update(&buf[..k]);
        got += k;
    }
    let _wr = writer
        .await
        .context("the writer task")?
        .context("writing")?;
    Ok((h.finalize().into(), connected))
}

/// Opens `conns` connections at once, each echoing `bytes_each` distinct bytes, and counts the
/// connections that fail or get wrong bytes back.
pub async fn concurrency(
    addr: SocketAddr,
    conns: usize,
    bytes_each: usize,
    per_conn: Duration,
) -> Concurrency {
    let jobs: Vec<(Vec<u8>, [u8; 32])> = (0..conns)
        .map(|i| {
            let data = payload(i as u64, bytes_each);
            let want = Sha256::digest(&data).into();
            (data, want)
        })
        .collect();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, (data, want)) in jobs.into_iter().enumerate() {
        set.spawn(async move {
            let r = match tokio::time::timeout(per_conn, echo_hash(addr, data)).await {
                Ok(Ok((got, connected))) if got == want => Ok((connected, start.elapsed())),
                Ok(Ok(_)) => Err(anyhow::anyhow!("bytes differ (hash mismatch)")),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(anyhow::anyhow!("timed out after {per_conn:?}")),
            };
            (i, r)
        });
    }
    let mut errors = 0;
    let mut samples = Vec::new();
    let mut connect_ms = Vec::with_capacity(conns);
    let mut done_ms = Vec::with_capacity(conns);
    while let Some(joined) = set.join_next().await {
        let (i, r) = match joined {
            Ok(v) => v,
            Err(e) => (usize::MAX, Err(anyhow::anyhow!("task failed: {e}"))),
        };
        match r {
            Ok((connected, done)) => {
                connect_ms.push(connected.as_secs_f64() * 1e3);
                done_ms.push(done.as_secs_f64() * 1e3);
            }
            Err(e) => {
                errors += 1;
                if samples.len() < 5 {
                    samples.push(format!("connection {i}: {e:#}"));
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    connect_ms.sort_by(f64::total_cmp);
    done_ms.sort_by(f64::total_cmp);
    Concurrency {
        connections: conns,
        bytes_each,
        errors,
        seconds,
        connect_p50_ms: percentile(&connect_ms, 50.0),
        connect_max_ms: connect_ms.last().copied().unwrap_or(f64::NAN),
        done_p50_ms: percentile(&done_ms, 50.0),
        done_p99_ms: percentile(&done_ms, 99.0),
        error_samples: samples,
    }
}

/// Streams `n` bytes (a pattern seeded by `seed`, in 64 KiB writes 2 ms apart) to an echo server
/// at `addr` and checks the same `n` bytes come back (no half-close: a container runtime's
/// port-forward does not pass one on); shared by `forward-scenarios` and the `forward` tests.
pub async fn stream_echo(addr: SocketAddr, seed: u64, n: usize) -> Result<(), String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = s.into_split();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let want: [u8; 32] = Sha256::digest(&data).into();
    let w = tokio::spawn(async move {
        for chunk in data.chunks(64 * 1024) {
            wr.write_all(chunk).await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::io::Result::Ok(wr)
    });
    let mut got = vec![0u8; n];
    let read = rd.read_exact(&mut got).await.map(drop);
    let wrote = w.await.map_err(|e| e.to_string())?;
    read.map_err(|e| format!("read after {} bytes: {e}", got.len()))?;
    drop(wrote.map_err(|e| format!("write: {e}"))?);
    let have: [u8; 32] = Sha256::digest(&got).into();
    if have == want {
        Ok(())
    } else {
        Err(format!("{} of {n} bytes back, content differs", got.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_the_lab() {
        let lab = kubeway_lab::images::pattern(1000, 4096);
        for (i, b) in lab.iter().enumerate() {
            assert_eq!(*b, pattern_byte(1000 + i as u64), "offset {}", 1000 + i);
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn upload_plan_hashes_what_it_sends() {
        let plan = UploadPlan::new((1 << 20) + 5);
        let mut all = plan.block.clone();
        all.extend_from_slice(&plan.block[..5]);
        assert_eq!(plan.sha256_hex, hex(&Sha256::digest(&all)));
    }
}
