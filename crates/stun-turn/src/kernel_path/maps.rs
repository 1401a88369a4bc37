//! The kernel path's shell: loads the TC program built from `bpf/relay.bpf.c`, attaches it to
//! the ingress of each interface, and writes the maps [`super::Offload`] plans. On kernels from
//! 6.6 the attachment is a TCX link owned by this process: it goes when the relay exits, even
//! when killed. On older kernels it is a cls_bpf filter (on a clsact qdisc) that would outlive a
//! killed relay, so a filter left by an earlier run is removed before attaching.

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::tc::{self, SchedClassifier, TcAttachType};
use aya::Ebpf;

use super::{Counters, InKey, InVal, MapOp, OutKey, OutVal, COUNTERS};

// SAFETY: plain #[repr(C)] structs of integers with explicit padding fields (no implicit
// padding, any bit pattern valid), as aya requires of map keys and values.
unsafe impl aya::Pod for InKey {}
unsafe impl aya::Pod for InVal {}
unsafe impl aya::Pod for OutKey {}
unsafe impl aya::Pod for OutVal {}
unsafe impl aya::Pod for Counters {}

static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));
const NAME: &str = "natkit_relay";

/// Why the kernel path could not start.
#[derive(Debug, thiserror::Error)]
pub enum KernelPathError {
    #[error("cannot load the kernel path's BPF program (is the relay root, with CAP_BPF and CAP_NET_ADMIN?)")]
    Load(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot attach the kernel path to interface {iface:?} (does it exist?)")]
    Attach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
}

fn load_err(e: impl std::error::Error + Send + Sync + 'static) -> KernelPathError {
    KernelPathError::Load(Box::new(e))
}

/// The loaded program, attached; dropping it detaches it.
pub struct KernelMaps {
    // Holds the program and its links.
    _ebpf: Ebpf,
    chan_in: HashMap<MapData, InKey, InVal>,
    chan_out: HashMap<MapData, OutKey, OutVal>,
    stats: PerCpuArray<MapData, Counters>,
}

impl KernelMaps {
    /// Loads the program and attaches it to the ingress of every interface in `ifaces`.
    pub fn attach(ifaces: &[String]) -> Result<KernelMaps, KernelPathError> {
        let mut ebpf = Ebpf::load(PROGRAM).map_err(load_err)?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(NAME)
            .ok_or_else(|| {
                load_err(std::io::Error::other(
                    "the object has no natkit_relay program",
                ))
            })?
            .try_into()
            .map_err(load_err)?;
        prog.load().map_err(load_err)?;
        for iface in ifaces {
            // Needed by cls_bpf attachments (kernels before 6.6); it may exist already.
            let _ = tc::qdisc_add_clsact(iface);
            // A filter of an earlier, killed relay (cls_bpf only; TCX links die with it).
            let _ = tc::qdisc_detach_program(iface, TcAttachType::Ingress, NAME);
            prog.attach(iface, TcAttachType::Ingress)
                .map_err(|source| KernelPathError::Attach {
                    iface: iface.clone(),
                    source,
                })?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name).ok_or_else(|| {
                load_err(std::io::Error::other(format!(
                    "the object has no map {name}"
                )))
            })
        };
        let chan_in = HashMap::try_from(take("chan_in")?).map_err(load_err)?;
        let chan_out = HashMap::try_from(take("chan_out")?).map_err(load_err)?;
        let stats = PerCpuArray::try_from(take("stats")?).map_err(load_err)?;
        Ok(KernelMaps {
            _ebpf: ebpf,
            chan_in,
            chan_out,
            stats,
        })
    }

    /// Carries out `ops`; returns how many the kernel refused (a full map: those bindings stay
    /// with the userspace path).
    pub fn apply(&mut self, ops: &[MapOp]) -> usize {
        let mut refused = 0;
        for op in ops {
            let r = match op {
                MapOp::PutIn(k, v) => self.chan_in.insert(k, v, 0),
                MapOp::PutOut(k, v) => self.chan_out.insert(k, v, 0),
                // A missing entry is what a removal wants.
                MapOp::DelIn(k) => self.chan_in.remove(k).or_else(not_found),
                MapOp::DelOut(k) => self.chan_out.remove(k).or_else(not_found),
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, ?op, "kernel path map update refused");
                refused += 1;
            }
        }
        refused
    }

    /// The program's counters, summed over the CPUs.
    pub fn counters(&self) -> Option<[u64; COUNTERS]> {
        let per_cpu = self.stats.get(&0, 0).ok()?;
        let mut sum = [0u64; COUNTERS];
        for c in per_cpu.iter() {
            for (s, v) in sum.iter_mut().zip(c.n) {
                *s = s.wrapping_add(v);
            }
        }
        Some(sum)
    }
}

fn not_found(e: aya::maps::MapError) -> Result<(), aya::maps::MapError> {
    match &e {
        aya::maps::MapError::KeyNotFound => Ok(()),
        aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        _ => Err(e),
    }
}
