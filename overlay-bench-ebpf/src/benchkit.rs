//! Benchmark harness, built as an object of its own so the dataplane object
//! carries nothing but the dataplane:
//! - `xdp_gen`, the packet generator: userspace runs it with BPF_PROG_RUN in
//!   live-frames mode on a template frame (what xdp-trafficgen does); each
//!   frame gets one of `GEN_FLOWS` UDP source ports and is transmitted
//!   (XDP_TX) out of the device the run names. `GEN_PACE` can space the
//!   frames in time and cap how many are sent; frames that are not due are
//!   dropped unsent, so the run's iterations are the generator's clock.
//! - `redirect_tc`, limit (a): the least a forwarding program can do on the
//!   same veths as the dataplane: redirect by ingress device to a configured
//!   target. No address lookup, no encapsulation. `redirect_xdp` does the
//!   same at the underlay NIC's XDP hook, the limit of XDP decap.
//! - `sink_tc`: the far end of a packet-rate run: counts and drops what
//!   arrives, so the receiver's own stack is not part of the measurement.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext as _,
        bindings::{__sk_buff, TC_ACT_OK, TC_ACT_SHOT, xdp_action},
        helpers::{bpf_ktime_get_ns, bpf_redirect, bpf_redirect_peer},
        macros::{classifier, map, xdp},
        maps::{Array, HashMap, PerCpuArray},
        programs::{TcContext, XdpContext},
    };
    use overlay_bench_ebpf::{
        GEN_PORT_BASE, GEN_PORT_OFFSET, GenPace, GenState, REDIRECT_PEER, RedirectTarget,
    };

    /// Flows the generator cycles through; userspace sets it at load time.
    #[unsafe(no_mangle)]
    static GEN_FLOWS: u32 = 1;

    /// 0 -> frames generated on this CPU. Written by `xdp_gen` only.
    #[map]
    static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

    /// 0 -> pacing of the current run. Written by userspace before a run.
    #[map]
    static GEN_PACE: Array<GenPace> = Array::with_max_entries(1, 0);

    /// 0 -> this CPU's next due time and frames sent. Zeroed by userspace
    /// before a run, then written by `xdp_gen` only.
    #[map]
    static GEN_STATE: PerCpuArray<GenState> = PerCpuArray::with_max_entries(1, 0);

    /// 0 -> frames that reached a sink on this CPU. Written by `sink_tc`.
    #[map]
    static SINK_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    /// ingress ifindex -> redirect target. Written by the benchmark setup.
    #[map]
    static REDIRECT: HashMap<u32, RedirectTarget> = HashMap::with_max_entries(64, 0);

    #[xdp]
    #[expect(
        clippy::needless_pass_by_value,
        reason = "aya's program macros hand the context over by value"
    )]
    pub fn xdp_gen(ctx: XdpContext) -> u32 {
        // Volatile: the loader rewrites the value in .rodata; a plain read
        // would be folded to the compile-time 1.
        // SAFETY: reading a static.
        let flows = unsafe { core::ptr::read_volatile(&GEN_FLOWS) }.max(1);
        let (Some(pace), Some(state), Some(seq)) = (
            GEN_PACE.get(0).copied(),
            GEN_STATE.get_ptr_mut(0),
            GEN_SEQ.get_ptr_mut(0),
        ) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        let state = unsafe { &mut *state };
        if state.sent >= pace.budget {
            return xdp_action::XDP_DROP;
        }
        if pace.interval_ns != 0 {
            // SAFETY: plain helper call.
            let now = unsafe { bpf_ktime_get_ns() };
            if state.next_ns == 0 {
                state.next_ns = now;
                state.first_ns = now;
            }
            if now < state.next_ns {
                return xdp_action::XDP_DROP;
            }
            // When the CPU was busy elsewhere (the run flushes and lets
            // softirqs run between batches), catch up by at most one
            // interval: a steady rate, never a burst that fills queues.
            state.next_ns = (state.next_ns + pace.interval_ns).max(now);
            state.last_ns = now;
        }
        state.sent += 1;
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        let n = unsafe {
            *seq = (*seq).wrapping_add(1);
            *seq
        };
        let (data, end) = (ctx.data(), ctx.data_end());
        if data + GEN_PORT_OFFSET + 2 > end {
            return xdp_action::XDP_ABORTED;
        }
        let port = GEN_PORT_BASE.wrapping_add((n % flows) as u16);
        // SAFETY: bounds checked just above.
        unsafe { *((data + GEN_PORT_OFFSET) as *mut [u8; 2]) = port.to_be_bytes() };
        xdp_action::XDP_TX
    }

    #[classifier]
    pub fn sink_tc(_ctx: TcContext) -> i32 {
        if let Some(n) = SINK_COUNT.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it while we run.
            unsafe { *n += 1 };
        }
        TC_ACT_SHOT
    }

    #[classifier]
    #[expect(
        clippy::needless_pass_by_value,
        reason = "aya's program macros hand the context over by value"
    )]
    pub fn redirect_tc(ctx: TcContext) -> i32 {
        // SAFETY: ctx wraps the program's valid __sk_buff.
        let ifindex = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex };
        // SAFETY: copied out at once.
        let Some(t) = (unsafe { REDIRECT.get(&ifindex) }).copied() else {
            return TC_ACT_OK;
        };
        // SAFETY: plain helper calls.
        let action = if t.flags & REDIRECT_PEER != 0 {
            unsafe { bpf_redirect_peer(t.ifindex, 0) }
        } else {
            unsafe { bpf_redirect(t.ifindex, 0) }
        };
        action as i32
    }

    /// Limit (a) for XDP decap: the same redirect by ingress device, at
    /// the underlay NIC's XDP hook (out of the target veth, as the
    /// dataplane's XDP decap delivers).
    #[xdp]
    #[expect(
        clippy::needless_pass_by_value,
        reason = "aya's program macros hand the context over by value"
    )]
    pub fn redirect_xdp(ctx: XdpContext) -> u32 {
        // SAFETY: ctx wraps the program's valid xdp_md.
        let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
        // SAFETY: copied out at once.
        let Some(t) = (unsafe { REDIRECT.get(&ifindex) }).copied() else {
            return xdp_action::XDP_PASS;
        };
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(t.ifindex, 0) as u32 }
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program in which a panic is reachable.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
