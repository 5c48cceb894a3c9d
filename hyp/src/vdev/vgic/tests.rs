//! Register-level and list-register tests of the vGIC, plus a random-operation fuzzer that
//! checks the module invariants after every step.

use super::*;
use crate::vdev::mmio::{AccessSize, MmioDevice, MmioError};
use alloc::vec;
use proptest::prelude::*;

const W: AccessSize = AccessSize::Word;
const B: AccessSize = AccessSize::Byte;
const D: AccessSize = AccessSize::Double;
const UART: Intid = Intid::spi(1);

fn gic(vcpus: usize) -> Vgic {
    Vgic::new(vcpus, DEFAULT_SPIS).unwrap()
}

fn dr(g: &mut Vgic, off: u64, size: AccessSize) -> u64 {
    let v = g.distributor().read(0, off, size).unwrap();
    g.check_invariants();
    v
}

fn dw(g: &mut Vgic, off: u64, size: AccessSize, val: u64) {
    g.distributor().write(0, off, size, val).unwrap();
    g.check_invariants();
}

fn rr(g: &mut Vgic, off: u64, size: AccessSize) -> u64 {
    g.redistributors().read(0, off, size).unwrap()
}

fn rw(g: &mut Vgic, off: u64, size: AccessSize, val: u64) {
    g.redistributors().write(0, off, size, val).unwrap();
    g.check_invariants();
}

/// What Linux's gic_dist_init/gic_cpu_init leave behind: everything group 1, priority 0xa0,
/// distributor groups enabled; plus the given interrupts enabled.
fn linux_like(vcpus: usize, enable: &[Intid]) -> Vgic {
    let mut g = gic(vcpus);
    for n in 1..3 {
        dw(&mut g, 0x80 + 4 * n, W, 0xffff_ffff);
    }
    for off in (0x420..0x460).step_by(4) {
        dw(&mut g, off, W, 0xa0a0_a0a0);
    }
    for v in 0..vcpus as u64 {
        let sgi = v * GICR_STRIDE + GICR_SGI_BASE;
        rw(&mut g, sgi + 0x80, W, 0xffff_ffff);
        for off in (0x400..0x420).step_by(4) {
            rw(&mut g, sgi + off, W, 0xa0a0_a0a0);
        }
    }
    dw(&mut g, 0, W, 0x13);
    for &id in enable {
        set_enabled(&mut g, 0, id);
    }
    g
}

fn set_enabled(g: &mut Vgic, vcpu: usize, id: Intid) {
    let bit = 1u64 << (id.raw() % 32);
    if id.is_private() {
        rw(g, vcpu as u64 * GICR_STRIDE + GICR_SGI_BASE + 0x100, W, bit);
    } else {
        dw(g, 0x100 + u64::from(id.raw() / 32) * 4, W, bit);
    }
}

fn set_priority(g: &mut Vgic, vcpu: usize, id: Intid, p: u8) {
    if id.is_private() {
        let off = vcpu as u64 * GICR_STRIDE + GICR_SGI_BASE + 0x400 + u64::from(id.raw());
        rw(g, off, B, u64::from(p));
    } else {
        dw(g, 0x400 + u64::from(id.raw()), B, u64::from(p));
    }
}

/// A flush followed by the guest leaving the list registers untouched and an exit.
fn flush_sync(g: &mut Vgic, vcpu: usize, n: usize) -> Flush {
    let f = g.flush(vcpu, n).unwrap();
    g.check_invariants();
    let raw: Vec<u64> = (0..n).map(|i| f.raw(i)).collect();
    g.sync(vcpu, &raw).unwrap();
    g.check_invariants();
    f
}

fn ids(f: &Flush) -> Vec<u32> {
    f.lrs.iter().flatten().map(|lr| lr.vintid.raw()).collect()
}

/// Runs the guest's side on `raw`: acknowledge (pending -> active) or EOI (active -> invalid
/// for EOImode 0) the list register holding `id`.
fn guest(raw: &mut [u64], id: u32, op: &str) {
    let i = raw
        .iter()
        .position(|&r| r as u32 == id && r >> 62 != 0)
        .expect("interrupt in an LR");
    let mut lr = Lr::decode(raw[i]);
    lr.state = match (op, lr.state) {
        ("ack", LrState::Pending) => LrState::Active,
        ("ack", LrState::PendingActive) => panic!("acking a pending+active LR"),
        ("eoi", LrState::Active) => LrState::Invalid,
        ("eoi", LrState::PendingActive) => LrState::Pending,
        (op, s) => panic!("guest cannot {op} an LR in state {s:?}"),
    };
    raw[i] = lr.encode();
}

fn raw_of(f: &Flush) -> Vec<u64> {
    (0..f.n_lrs).map(|i| f.raw(i)).collect()
}

// ---- distributor registers -------------------------------------------------------------

#[test]
fn distributor_reset_and_identification() {
    let mut g = gic(2);
    assert_eq!(
        dr(&mut g, 0x0, W),
        0x50,
        "GICD_CTLR: ARE and DS set, groups disabled"
    );
    let typer = dr(&mut g, 0x4, W);
    assert_eq!(typer & 0x1f, 2, "ITLinesNumber for INTIDs 0..96");
    assert_eq!((typer >> 5) & 7, 1, "CPUNumber = vCPUs - 1");
    assert_eq!((typer >> 19) & 0x1f, 9, "10 INTID bits");
    assert_eq!(typer & (1 << 17), 0, "no LPIs");
    assert_eq!(typer & (1 << 10), 0, "one security state");
    assert_eq!(dr(&mut g, 0x8, W), u64::from(distributor::GICD_IIDR));
    assert_eq!(dr(&mut g, 0xc, W), 0, "TYPER2");
    assert_eq!(dr(&mut g, 0xffe8, W) & 0xf0, 0x30, "PIDR2.ArchRev = GICv3");
    assert_eq!(
        dr(&mut g, 0x6000 + 8 * 40, D),
        0,
        "IROUTER resets to 0.0.0.0"
    );
}

#[test]
fn gicd_ctlr_keeps_only_group_enables() {
    let mut g = gic(1);
    dw(&mut g, 0, W, 0xffff_ffff);
    assert_eq!(dr(&mut g, 0, W), 0x53);
    dw(&mut g, 0, W, 0);
    assert_eq!(dr(&mut g, 0, W), 0x50, "ARE and DS are RAO/WI");
}

#[test]
fn spi_enable_pending_active_banks() {
    let mut g = gic(1);
    dw(&mut g, 0x104, W, 0x8000_0003);
    assert_eq!(dr(&mut g, 0x104, W), 0x8000_0003);
    assert_eq!(
        dr(&mut g, 0x184, W),
        0x8000_0003,
        "ICENABLER reads the same state"
    );
    dw(&mut g, 0x184, W, 0x1);
    assert_eq!(dr(&mut g, 0x104, W), 0x8000_0002);
    dw(&mut g, 0x208, W, 0x10);
    assert_eq!(dr(&mut g, 0x288, W), 0x10, "SPI 68 pending");
    dw(&mut g, 0x288, W, 0x10);
    assert_eq!(dr(&mut g, 0x208, W), 0);
    dw(&mut g, 0x304, W, 0x4);
    assert_eq!(dr(&mut g, 0x384, W), 0x4);
    dw(&mut g, 0x384, W, 0x4);
    assert_eq!(dr(&mut g, 0x304, W), 0);
    dw(&mut g, 0x84, W, 0xf0f0);
    assert_eq!(dr(&mut g, 0x84, W), 0xf0f0);
}

#[test]
fn private_and_unimplemented_intids_are_raz_wi_in_the_distributor() {
    let mut g = gic(1);
    for base in [0x80, 0x100, 0x200, 0x300] {
        dw(&mut g, base, W, 0xffff_ffff);
        assert_eq!(
            dr(&mut g, base, W),
            0,
            "bank 0 at {base:#x} belongs to the redistributor"
        );
        dw(&mut g, base + 12, W, 0xffff_ffff);
        assert_eq!(
            dr(&mut g, base + 12, W),
            0,
            "INTIDs 96.. are not implemented"
        );
    }
    dw(&mut g, 0x400, W, 0xffff_ffff);
    assert_eq!(dr(&mut g, 0x400, W), 0);
    dw(&mut g, 0xc04, W, 0xffff_ffff);
    assert_eq!(dr(&mut g, 0xc04, W), 0);
    assert_eq!(g.redistributors().read(0, GICR_SGI_BASE + 0x100, W), Ok(0));
    dw(&mut g, 0x6000 + 8 * 100, D, 0x1234);
    assert_eq!(dr(&mut g, 0x6000 + 8 * 100, D), 0);
}

#[test]
fn priorities_by_byte_and_word_keep_five_bits() {
    let mut g = gic(1);
    dw(&mut g, 0x420, W, 0x1122_33ff);
    assert_eq!(dr(&mut g, 0x420, W), 0x1020_30f8);
    dw(&mut g, 0x422, B, 0xa7);
    assert_eq!(dr(&mut g, 0x422, B), 0xa0);
    assert_eq!(dr(&mut g, 0x420, W), 0x10a0_30f8);
}

#[test]
fn spi_configuration_is_writable() {
    let mut g = gic(1);
    dw(&mut g, 0xc08, W, 0x0000_000a);
    assert_eq!(dr(&mut g, 0xc08, W), 0xa, "INTIDs 32, 33 edge-triggered");
    dw(&mut g, 0xc08, W, 0);
    assert_eq!(dr(&mut g, 0xc08, W), 0);
}

#[test]
fn irouter_full_and_half_accesses_and_routing() {
    let mut g = gic(20);
    let r = 0x6000 + 8 * u64::from(UART.raw());
    dw(&mut g, r, D, 0xffff_ffff_ffff_ffff);
    assert_eq!(
        dr(&mut g, r, D),
        0xff_80ff_ffff,
        "only Aff3, IRM, Aff2..0 hold state"
    );
    dw(&mut g, r, D, 0x0103);
    assert_eq!(
        g.spi_target(UART),
        Ok(Some(19)),
        "Aff1 1, Aff0 3 is vCPU 19"
    );
    dw(&mut g, r + 4, W, 0x1);
    assert_eq!(dr(&mut g, r + 4, W), 1);
    assert_eq!(dr(&mut g, r, W), 0x0103);
    assert_eq!(g.spi_target(UART), Ok(None), "Aff3 1 matches no vCPU");
    dw(&mut g, r + 4, W, 0);
    dw(&mut g, r, W, 0x8000_0000);
    assert_eq!(g.spi_target(UART), Ok(Some(0)), "IRM = 1 goes to vCPU 0");
}

#[test]
fn distributor_access_errors() {
    let mut g = gic(1);
    let mut d = g.distributor();
    assert_eq!(
        d.read(0, 0x0, AccessSize::Half),
        Err(MmioError::BadWidth {
            offset: 0,
            size: AccessSize::Half
        })
    );
    assert_eq!(
        d.read(0, 0x100, B),
        Err(MmioError::BadWidth {
            offset: 0x100,
            size: B
        })
    );
    assert_eq!(
        d.read(0, 0x0, D),
        Err(MmioError::BadWidth { offset: 0, size: D })
    );
    assert_eq!(
        d.read(0, 0x6104, D),
        Err(MmioError::Unaligned {
            offset: 0x6104,
            size: D
        })
    );
    assert_eq!(
        d.write(0, 0x2, W, 0),
        Err(MmioError::Unaligned { offset: 2, size: W })
    );
    assert_eq!(
        d.read(0, 0x1_0000, B),
        Err(MmioError::OutOfWindow {
            offset: 0x1_0000,
            size: B
        })
    );
    // Reserved offsets: RAZ/WI at any aligned width.
    assert_eq!(d.read(0, 0x5000, D), Ok(0));
    assert_eq!(d.write(0, 0x5000, B, 0xff), Ok(()));
    assert_eq!(d.read(0, 0x5000, B), Ok(0));
}

// ---- redistributor registers -----------------------------------------------------------

#[test]
fn redistributor_typer_names_each_vcpu_and_the_last_frame() {
    let mut g = gic(18);
    for v in 0..18u64 {
        let t = rr(&mut g, v * GICR_STRIDE + 8, D);
        let aff = guest_loader::guest_dtb::vcpu_mpidr(v as u32);
        assert_eq!(
            t >> 32,
            (aff & 0xff) | ((aff >> 8) & 0xff) << 8,
            "affinity of vCPU {v}"
        );
        assert_eq!((t >> 8) & 0xffff, v, "Processor_Number");
        assert_eq!(
            t & redistributor::TYPER_LAST != 0,
            v == 17,
            "Last only on the final frame"
        );
        assert_eq!(t & 0x3, 0, "no physical or virtual LPIs");
        assert_eq!(rr(&mut g, v * GICR_STRIDE + 8, W), t & 0xffff_ffff);
        assert_eq!(rr(&mut g, v * GICR_STRIDE + 0xc, W), t >> 32);
    }
    assert_eq!(rr(&mut g, 0xffe8, W) & 0xf0, 0x30);
    assert_eq!(
        g.redistributors().read(0, 18 * GICR_STRIDE, W),
        Err(MmioError::OutOfWindow {
            offset: 18 * GICR_STRIDE,
            size: W
        })
    );
    assert_eq!(
        g.redistributors().read(0, 0xc, D),
        Err(MmioError::Unaligned {
            offset: 0xc,
            size: D
        })
    );
    assert_eq!(
        g.redistributors().read(0, 0x14, D),
        Err(MmioError::Unaligned {
            offset: 0x14,
            size: D
        })
    );
    assert_eq!(
        g.redistributors().read(0, 0x10, D),
        Err(MmioError::BadWidth {
            offset: 0x10,
            size: D
        })
    );
    assert_eq!(
        g.redistributors().read(0, 0x8, B),
        Err(MmioError::BadWidth {
            offset: 0x8,
            size: B
        })
    );
}

#[test]
fn waker_handshake_as_linux_does_it() {
    let mut g = gic(2);
    let waker = GICR_STRIDE + 0x14;
    assert_eq!(rr(&mut g, waker, W), 0x6, "asleep out of reset");
    let v = rr(&mut g, waker, W) & !u64::from(redistributor::WAKER_PROCESSOR_SLEEP);
    rw(&mut g, waker, W, v);
    assert_eq!(
        rr(&mut g, waker, W) & u64::from(redistributor::WAKER_CHILDREN_ASLEEP),
        0
    );
    assert_eq!(
        rr(&mut g, 0x14, W),
        0x6,
        "vCPU 0's redistributor is still asleep"
    );
    rw(&mut g, waker, W, 0x2);
    assert_eq!(
        rr(&mut g, waker, W),
        0x6,
        "going to sleep sets ChildrenAsleep"
    );
}

#[test]
fn sgi_ppi_banks_are_per_frame() {
    let mut g = gic(2);
    let s1 = GICR_STRIDE + GICR_SGI_BASE;
    rw(&mut g, s1 + 0x100, W, 0x0800_0001);
    assert_eq!(rr(&mut g, s1 + 0x100, W), 0x0800_0001);
    assert_eq!(
        rr(&mut g, GICR_SGI_BASE + 0x100, W),
        0,
        "vCPU 0's bank untouched"
    );
    rw(&mut g, s1 + 0x200, W, 0x2);
    assert_eq!(rr(&mut g, s1 + 0x280, W), 0x2);
    rw(&mut g, s1 + 0x280, W, 0x2);
    assert_eq!(rr(&mut g, s1 + 0x200, W), 0);
    rw(&mut g, s1 + 0x41b, B, 0xa5);
    assert_eq!(rr(&mut g, s1 + 0x418, W), 0xa0 << 24);
    assert_eq!(
        rr(&mut g, s1 + 0xc00, W),
        0xaaaa_aaaa,
        "SGIs are edge-triggered"
    );
    rw(&mut g, s1 + 0xc00, W, 0);
    assert_eq!(rr(&mut g, s1 + 0xc00, W), 0xaaaa_aaaa, "and stay so");
    rw(&mut g, s1 + 0xc04, W, 0x2 << 22);
    assert_eq!(rr(&mut g, s1 + 0xc04, W), 0x2 << 22, "PPI 27 edge");
    rw(&mut g, s1 + 0xd00, W, 0xffff_ffff);
    assert_eq!(rr(&mut g, s1 + 0xd00, W), 0, "IGRPMODR0 RAZ/WI with DS = 1");
    assert_eq!(
        g.redistributors().read(0, s1 + 0x100, AccessSize::Half),
        Err(MmioError::BadWidth {
            offset: s1 + 0x100,
            size: AccessSize::Half
        })
    );
}

// ---- injection and SGIs ----------------------------------------------------------------

fn sgi_pending(g: &mut Vgic, vcpu: usize) -> u64 {
    rr(g, vcpu as u64 * GICR_STRIDE + GICR_SGI_BASE + 0x200, W) & 0xffff
}

#[test]
fn sgi_target_list_reaches_the_named_vcpus_only() {
    let mut g = linux_like(20, &[]);
    // INTID 3 to Aff1 0, Aff0 {1, 4}.
    let hit = g.send_sgi(0, (3 << 24) | 0b1_0010).unwrap();
    assert_eq!(hit.iter().collect::<Vec<_>>(), vec![1, 4]);
    for v in 0..20 {
        assert_eq!(
            sgi_pending(&mut g, v),
            if v == 1 || v == 4 { 1 << 3 } else { 0 },
            "vCPU {v}"
        );
    }
    // Aff1 1 holds vCPUs 16..20; Aff0 2 there is vCPU 18. Aff0 5 (vCPU 21) does not exist.
    let hit = g.send_sgi(0, (5 << 24) | (1 << 16) | 0b10_0100).unwrap();
    assert_eq!(hit.iter().collect::<Vec<_>>(), vec![18]);
    assert_eq!(sgi_pending(&mut g, 18), 1 << 5);
    assert_eq!(sgi_pending(&mut g, 2), 0, "Aff1 matters");
    g.check_invariants();
}

#[test]
fn sgi_range_selector_and_broadcast() {
    let mpidrs = (0..40u64).collect();
    let mut g = Vgic::with_mpidrs(mpidrs, 32).unwrap();
    for v in 0..40 {
        g.redistributors()
            .write(0, v * GICR_STRIDE + GICR_SGI_BASE + 0x80, W, 0xffff)
            .unwrap();
    }
    // RS = 2: Aff0 32..48; bit 1 -> Aff0 33.
    let hit = g.send_sgi(0, (2 << 44) | (7 << 24) | 0b10).unwrap();
    assert_eq!(hit.iter().collect::<Vec<_>>(), vec![33]);
    let all = g.send_sgi(5, (1 << 40) | (9 << 24)).unwrap();
    assert_eq!(all.iter().count(), 39);
    assert!(!all.contains(5), "IRM = 1 excludes the sender");
    assert_eq!(sgi_pending(&mut g, 5), 0);
    assert_eq!(sgi_pending(&mut g, 6), 1 << 9);
    assert_eq!(
        g.send_sgi(40, 0),
        Err(VgicError::NoSuchVcpu {
            vcpu: 40,
            vcpus: 40
        })
    );
}

#[test]
fn sgi_register_generates_only_its_own_group() {
    let mut g = gic(2); // everything group 0 after reset
    assert!(
        g.send_sgi(0, (1 << 24) | 0b10).unwrap().is_empty(),
        "SGI1R leaves group 0 SGIs alone"
    );
    assert_eq!(sgi_pending(&mut g, 1), 0);
    assert_eq!(
        g.send_sgi0(0, (1 << 24) | 0b10)
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(sgi_pending(&mut g, 1), 1 << 1);
}

#[test]
fn injection_argument_errors() {
    let mut g = gic(2);
    assert_eq!(
        g.set_spi_level(Intid::new(96), true),
        Err(VgicError::NotAnSpi {
            intid: Intid::new(96)
        })
    );
    assert_eq!(
        g.set_spi_level(Intid::new(27), true),
        Err(VgicError::NotAnSpi {
            intid: Intid::new(27)
        })
    );
    assert_eq!(
        g.inject_ppi(0, Intid::new(33)),
        Err(VgicError::NotAPpi {
            intid: Intid::new(33)
        })
    );
    assert_eq!(
        g.inject_ppi(2, Intid::VTIMER),
        Err(VgicError::NoSuchVcpu { vcpu: 2, vcpus: 2 })
    );
    assert_eq!(
        g.link_hw(0, Intid::VTIMER, 8192),
        Err(VgicError::BadPhysicalIntid { pintid: 8192 })
    );
    assert_eq!(
        Vgic::new(0, 64).unwrap_err(),
        VgicError::BadVcpuCount { vcpus: 0 }
    );
    assert_eq!(
        Vgic::new(1, 33).unwrap_err(),
        VgicError::BadSpiCount { spis: 33 }
    );
    assert_eq!(
        Vgic::new(1, 992).unwrap_err(),
        VgicError::BadSpiCount { spis: 992 }
    );
    assert!(Vgic::new(1, 960).is_ok());
}

#[test]
fn kick_target_follows_enable_and_routing() {
    let mut g = linux_like(2, &[]);
    assert_eq!(
        g.set_spi_level(UART, true),
        Ok(None),
        "disabled: nobody to kick"
    );
    set_enabled(&mut g, 0, UART);
    g.set_spi_level(UART, false).unwrap();
    dw(&mut g, 0x6000 + 8 * 33, D, 1);
    assert_eq!(g.set_spi_level(UART, true), Ok(Some(1)));
    assert_eq!(g.vcpu_has_pending(1), Ok(true));
    assert_eq!(g.vcpu_has_pending(0), Ok(false));
    dw(&mut g, 0, W, 0x0);
    assert_eq!(
        g.vcpu_has_pending(1),
        Ok(false),
        "group 1 disabled in GICD_CTLR"
    );
}

// ---- list-register manager -------------------------------------------------------------

#[test]
fn flush_orders_by_priority_and_reports_underflow() {
    let spis: Vec<Intid> = (0..6).map(|n| Intid::spi(n + 2)).collect();
    let mut g = linux_like(1, &spis);
    for (i, &id) in spis.iter().enumerate() {
        set_priority(&mut g, 0, id, [0x80, 0x20, 0xf0, 0x20, 0x40, 0x10][i]);
        g.pulse_spi(id).unwrap();
    }
    let f = g.flush(0, 4).unwrap();
    g.check_invariants();
    assert!(f.underflow, "six pending, four list registers");
    // Priority 0x10 (INTID 39), 0x20 (35, 37: lower INTID first), 0x40 (38).
    assert_eq!(ids(&f), vec![39, 35, 37, 38]);
    assert!(
        f.lrs
            .iter()
            .flatten()
            .all(|lr| lr.state == LrState::Pending && lr.group1)
    );
    // The guest takes and finishes all four; the other two go in next time.
    let mut raw = raw_of(&f);
    for id in [39, 35, 37, 38] {
        guest(&mut raw, id, "ack");
        guest(&mut raw, id, "eoi");
    }
    g.sync(0, &raw).unwrap();
    g.check_invariants();
    let f = flush_sync(&mut g, 0, 4);
    assert_eq!(ids(&f), vec![34, 36]);
    assert!(!f.underflow);
    assert_eq!(f.used(), 2);
}

#[test]
fn untaken_pending_interrupts_survive_sync() {
    let mut g = linux_like(1, &[Intid::spi(4)]);
    g.pulse_spi(Intid::spi(4)).unwrap();
    for _ in 0..3 {
        let f = flush_sync(&mut g, 0, 4);
        assert_eq!(ids(&f), vec![36], "still pending until the guest takes it");
    }
    assert_eq!(g.vcpu_has_pending(0), Ok(true));
}

#[test]
fn active_interrupt_keeps_its_lr_before_higher_priority_pending() {
    let spis = [Intid::spi(2), Intid::spi(3)];
    let mut g = linux_like(1, &spis);
    set_priority(&mut g, 0, spis[0], 0x80);
    set_priority(&mut g, 0, spis[1], 0x10);
    g.pulse_spi(spis[0]).unwrap();
    let f = g.flush(0, 1).unwrap();
    let mut raw = raw_of(&f);
    guest(&mut raw, 34, "ack");
    g.sync(0, &raw).unwrap();
    g.pulse_spi(spis[1]).unwrap();
    let f = g.flush(0, 1).unwrap();
    g.check_invariants();
    assert_eq!(
        ids(&f),
        vec![34],
        "the active interrupt must stay reachable for its EOI"
    );
    assert_eq!(f.lrs[0].unwrap().state, LrState::Active);
    assert!(f.underflow);
    let mut raw = raw_of(&f);
    guest(&mut raw, 34, "eoi");
    g.sync(0, &raw).unwrap();
    assert_eq!(ids(&flush_sync(&mut g, 0, 1)), vec![35]);
}

#[test]
fn level_spi_is_reasserted_after_eoi_while_the_line_is_high() {
    let mut g = linux_like(1, &[UART]);
    g.set_spi_level(UART, true).unwrap();
    let f = g.flush(0, 4).unwrap();
    let lr = f.lrs[0].unwrap();
    assert_eq!(
        lr.link,
        LrLink::Virtual {
            eoi_maintenance: true
        },
        "level: EOI maintenance to re-sample"
    );
    let mut raw = raw_of(&f);
    guest(&mut raw, 33, "ack");
    guest(&mut raw, 33, "eoi"); // the handler did not clear the device
    g.sync(0, &raw).unwrap();
    let f = g.flush(0, 4).unwrap();
    assert_eq!(ids(&f), vec![33], "line still high: pending again");
    let mut raw = raw_of(&f);
    guest(&mut raw, 33, "ack");
    g.set_spi_level(UART, false).unwrap(); // now the handler drains the device
    guest(&mut raw, 33, "eoi");
    g.sync(0, &raw).unwrap();
    g.check_invariants();
    assert!(
        ids(&flush_sync(&mut g, 0, 4)).is_empty(),
        "line low: nothing left"
    );
}

#[test]
fn level_spi_dropped_before_the_guest_takes_it_is_withdrawn() {
    let mut g = linux_like(1, &[UART]);
    g.set_spi_level(UART, true).unwrap();
    let f = g.flush(0, 4).unwrap();
    g.set_spi_level(UART, false).unwrap();
    g.sync(0, &raw_of(&f)).unwrap();
    assert!(ids(&flush_sync(&mut g, 0, 4)).is_empty());
}

#[test]
fn software_pending_of_a_level_spi_survives_an_untaken_lr() {
    let mut g = linux_like(1, &[UART]);
    dw(&mut g, 0x204, W, 0x2); // ISPENDR: latch, line low
    let f = flush_sync(&mut g, 0, 4);
    assert_eq!(ids(&f), vec![33]);
    assert_eq!(
        ids(&flush_sync(&mut g, 0, 4)),
        vec![33],
        "the latch came back from the LR"
    );
}

#[test]
fn edge_arriving_while_active_becomes_pending_and_active() {
    let mut g = linux_like(1, &[Intid::spi(5)]);
    dw(&mut g, 0xc08, W, 0x2 << 10); // INTID 37 edge
    g.pulse_spi(Intid::spi(5)).unwrap();
    let f = g.flush(0, 2).unwrap();
    let mut raw = raw_of(&f);
    guest(&mut raw, 37, "ack");
    g.pulse_spi(Intid::spi(5)).unwrap(); // arrives while the guest runs its handler
    g.sync(0, &raw).unwrap();
    let f = g.flush(0, 2).unwrap();
    assert_eq!(f.lrs[0].unwrap().state, LrState::PendingActive);
    assert_eq!(
        f.lrs[0].unwrap().link,
        LrLink::Virtual {
            eoi_maintenance: false
        }
    );
    let mut raw = raw_of(&f);
    guest(&mut raw, 37, "eoi");
    guest(&mut raw, 37, "ack");
    guest(&mut raw, 37, "eoi");
    g.sync(0, &raw).unwrap();
    g.check_invariants();
    assert!(
        ids(&flush_sync(&mut g, 0, 2)).is_empty(),
        "both edges delivered, none left"
    );
}

#[test]
fn virtual_timer_goes_in_hardware_linked() {
    let mut g = linux_like(2, &[]);
    set_enabled(&mut g, 1, Intid::VTIMER);
    assert_eq!(g.inject_ppi(1, Intid::VTIMER), Ok(true));
    assert!(
        ids(&flush_sync(&mut g, 0, 4)).is_empty(),
        "PPIs are banked: not vCPU 0's"
    );
    let f = g.flush(1, 4).unwrap();
    let lr = f.lrs[0].unwrap();
    assert_eq!(lr.link, LrLink::Hardware { pintid: 27 });
    assert_eq!(lr.vintid, Intid::VTIMER);
    assert_eq!(f.raw(0), 0x70a0_001b_0000_001b);
    let mut raw = raw_of(&f);
    guest(&mut raw, 27, "ack");
    g.sync(1, &raw).unwrap();
    // The timer fires again before the guest deactivated: no pending+active with HW = 1.
    g.inject_ppi(1, Intid::VTIMER).unwrap();
    let f = g.flush(1, 4).unwrap();
    g.check_invariants();
    assert_eq!(f.lrs[0].unwrap().state, LrState::Active);
    let mut raw = raw_of(&f);
    guest(&mut raw, 27, "eoi");
    g.sync(1, &raw).unwrap();
    let f = flush_sync(&mut g, 1, 4);
    assert_eq!(
        f.lrs[0].unwrap().state,
        LrState::Pending,
        "the second expiry follows"
    );
    g.unlink_hw(1, Intid::VTIMER).unwrap();
    assert_eq!(
        g.flush(1, 4).unwrap().lrs[0].unwrap().link,
        LrLink::Virtual {
            eoi_maintenance: true
        }
    );
}

#[test]
fn spi_in_one_vcpus_lrs_is_not_given_to_another() {
    let mut g = linux_like(2, &[UART]);
    g.set_spi_level(UART, true).unwrap();
    let f0 = g.flush(0, 4).unwrap();
    assert_eq!(ids(&f0), vec![33]);
    // The guest re-routes the SPI to vCPU 1 while vCPU 0 runs with it in an LR.
    g.distributor().write(1, 0x6000 + 8 * 33, D, 1).unwrap();
    assert!(ids(&flush_sync(&mut g, 1, 4)).is_empty(), "still vCPU 0's");
    let mut raw = raw_of(&f0);
    guest(&mut raw, 33, "ack");
    g.sync(0, &raw).unwrap();
    assert!(
        ids(&flush_sync(&mut g, 1, 4)).is_empty(),
        "active on vCPU 0: its EOI must find it there"
    );
    let f0 = g.flush(0, 4).unwrap();
    assert_eq!(
        f0.lrs[0].unwrap().state,
        LrState::PendingActive,
        "line still high"
    );
    let mut raw = raw_of(&f0);
    guest(&mut raw, 33, "eoi");
    g.sync(0, &raw).unwrap();
    g.check_invariants();
    assert_eq!(
        ids(&flush_sync(&mut g, 1, 4)),
        vec![33],
        "now it follows the new route"
    );
}

#[test]
fn flush_and_sync_protocol_errors() {
    let mut g = linux_like(1, &[UART]);
    assert_eq!(g.flush(0, 0), Err(VgicError::BadLrCount { n_lrs: 0 }));
    assert_eq!(g.flush(0, 17), Err(VgicError::BadLrCount { n_lrs: 17 }));
    g.set_spi_level(UART, true).unwrap();
    g.flush(0, 4).unwrap();
    assert_eq!(g.flush(0, 4), Err(VgicError::FlushWithoutSync { vcpu: 0 }));
    assert_eq!(
        g.sync(0, &[]),
        Err(VgicError::ShortSync {
            vcpu: 0,
            given: 0,
            needed: 1
        })
    );
    assert_eq!(
        g.flush(1, 4),
        Err(VgicError::NoSuchVcpu { vcpu: 1, vcpus: 1 })
    );
}

// ---- no input can panic ----------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Dist {
        vcpu: usize,
        off: u64,
        size: AccessSize,
        write: Option<u64>,
    },
    Redist {
        off: u64,
        size: AccessSize,
        write: Option<u64>,
    },
    Spi {
        n: u32,
        level: bool,
    },
    Ppi {
        vcpu: usize,
        n: u32,
    },
    Sgi {
        vcpu: usize,
        value: u64,
    },
    /// Flush, let the guest act on each LR (0 nothing, 1 ack, 2 ack+EOI, 3 EOI), sync.
    Run {
        vcpu: usize,
        n_lrs: usize,
        acts: Vec<u8>,
    },
}

fn any_size() -> impl Strategy<Value = AccessSize> {
    prop::sample::select(AccessSize::ALL.to_vec())
}

fn any_op() -> impl Strategy<Value = Op> {
    // Mostly the registers that change delivery, so the fuzzer reaches full list registers.
    let live = prop::sample::select(vec![
        0x0, 0x84, 0x104, 0x184, 0x204, 0x284, 0x304, 0x384, 0x420, 0x424, 0xc08, 0x6108, 0x610c,
    ]);
    let offset = prop_oneof![
        3 => live,
        1 => 0u64..0x1_0000,
        1 => 0u64..0x1000,
        1 => 0x6000u64..0x6400,
        1 => 0xffd0u64..0x1_0001,
    ];
    let rlive = prop::sample::select(vec![
        0x80u64, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x418, 0xc04,
    ]);
    let roff = prop_oneof![
        2 => (0u64..3, rlive).prop_map(|(f, o)| f * GICR_STRIDE + GICR_SGI_BASE + o),
        1 => 0u64..0x6_0000,
        1 => (0u64..3, 0u64..0x1000).prop_map(|(f, o)| f * GICR_STRIDE + GICR_SGI_BASE + o),
    ];
    let value = prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64)];
    let spi = prop_oneof![3 => 32u32..44, 1 => 0u32..100];
    let ppi = prop_oneof![3 => 16u32..32, 1 => 0u32..40];
    let sgi = prop_oneof![
        any::<u64>(),
        (0u64..16, 0u64..8).prop_map(|(i, l)| (i << 24) | l),
        (0u64..16).prop_map(|i| (i << 24) | (1 << 40)),
    ];
    let lrs = prop_oneof![3 => 1usize..5, 1 => 0usize..18];
    prop_oneof![
        1 => (0usize..3, offset, any_size(), prop::option::of(value.clone()))
            .prop_map(|(vcpu, off, size, write)| Op::Dist { vcpu, off, size, write }),
        1 => (roff, any_size(), prop::option::of(value))
            .prop_map(|(off, size, write)| Op::Redist { off, size, write }),
        2 => (spi, any::<bool>()).prop_map(|(n, level)| Op::Spi { n, level }),
        1 => (0usize..4, ppi).prop_map(|(vcpu, n)| Op::Ppi { vcpu, n }),
        1 => (0usize..4, sgi).prop_map(|(vcpu, value)| Op::Sgi { vcpu, value }),
        3 => (0usize..4, lrs, prop::collection::vec(0u8..4, 16))
            .prop_map(|(vcpu, n_lrs, acts)| Op::Run { vcpu, n_lrs, acts }),
    ]
}

/// Reference for `flush`: every interrupt `vcpu` may take, sorted (active first, then
/// priority, then INTID), cut to `n` list registers.
fn expected_lrs(g: &Vgic, vcpu: usize, n: usize) -> Vec<u32> {
    if vcpu >= g.vcpus() {
        return Vec::new();
    }
    let wants = |irq: &irq::Irq| irq.active || deliverable(irq, g.ctlr);
    let mut c: Vec<(bool, u8, u32)> = Vec::new();
    for (i, irq) in g.cpus[vcpu].private.iter().enumerate() {
        if wants(irq) {
            c.push((!irq.active, irq.priority, i as u32));
        }
    }
    for (i, irq) in g.spis.iter().enumerate() {
        if wants(irq) && g.spi_candidate_for(irq, vcpu) {
            c.push((!irq.active, irq.priority, Intid::spi(i as u32).raw()));
        }
    }
    c.sort();
    c.into_iter().take(n).map(|k| k.2).collect()
}

fn apply(g: &mut Vgic, op: &Op) {
    match op {
        Op::Dist {
            vcpu,
            off,
            size,
            write: Some(v),
        } => {
            let _ = g.distributor().write(*vcpu, *off, *size, *v);
        }
        Op::Dist {
            vcpu,
            off,
            size,
            write: None,
        } => {
            if let Ok(v) = g.distributor().read(*vcpu, *off, *size) {
                assert_eq!(
                    v & !size.mask(),
                    0,
                    "a read returns no bits beyond its width"
                );
            }
        }
        Op::Redist {
            off,
            size,
            write: Some(v),
        } => {
            let _ = g.redistributors().write(0, *off, *size, *v);
        }
        Op::Redist {
            off,
            size,
            write: None,
        } => {
            if let Ok(v) = g.redistributors().read(0, *off, *size) {
                assert_eq!(v & !size.mask(), 0);
            }
        }
        Op::Spi { n, level } => {
            let _ = g.set_spi_level(Intid::new(*n), *level);
        }
        Op::Ppi { vcpu, n } => {
            let _ = g.inject_ppi(*vcpu, Intid::new(*n));
        }
        Op::Sgi { vcpu, value } => {
            let _ = g.send_sgi(*vcpu, *value);
        }
        Op::Run { vcpu, n_lrs, acts } => {
            let expected = expected_lrs(g, *vcpu, *n_lrs);
            let Ok(f) = g.flush(*vcpu, *n_lrs) else {
                return;
            };
            assert_eq!(
                ids(&f),
                expected,
                "flush picks the best candidates in order"
            );
            g.check_invariants();
            let mut raw = raw_of(&f);
            for (i, r) in raw.iter_mut().enumerate() {
                let mut lr = Lr::decode(*r);
                let hw = matches!(lr.link, LrLink::Hardware { .. });
                lr.state = match (acts[i], lr.state) {
                    (1, LrState::Pending) => LrState::Active,
                    (2, LrState::Pending) | (3, LrState::Active) => LrState::Invalid,
                    (3, LrState::PendingActive) if !hw => LrState::Pending,
                    (_, s) => s,
                };
                *r = lr.encode();
            }
            g.sync(*vcpu, &raw).unwrap();
        }
    }
    g.check_invariants();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_operations_never_panic_and_keep_invariants(
        ops in prop::collection::vec(any_op(), 1..120), linux in any::<bool>()
    ) {
        let mut g = if linux { linux_like(3, &[]) } else { gic(3) };
        if linux {
            // Everything enabled, so injections become deliverable.
            dw(&mut g, 0x104, W, 0xffff_ffff);
            for v in 0..3 {
                rw(&mut g, v * GICR_STRIDE + GICR_SGI_BASE + 0x100, W, 0xffff_ffff);
            }
        }
        // The run loop skips the flush of a vCPU whose last flush loaded nothing while the
        // generation stays the same: check such a flush would indeed load nothing.
        let mut quiet: Vec<Option<u64>> = vec![None; g.vcpus()];
        for op in &ops {
            apply(&mut g, op);
            for (v, q) in quiet.iter_mut().enumerate() {
                let f = g.clone().flush(v, 4).unwrap();
                let empty = f.used() == 0 && !f.underflow;
                if *q == Some(g.generation()) {
                    prop_assert!(empty, "vCPU {v}: generation unchanged but the flush loads {f:?}");
                }
                *q = empty.then_some(g.generation());
            }
        }
    }
}

#[test]
fn a_timer_that_stopped_asserting_is_withdrawn_unless_taken() {
    let mut g = linux_like(1, &[]);
    set_enabled(&mut g, 0, Intid::VTIMER);
    const ISPENDR0: u64 = 0x1_0200;
    let pending = |g: &mut Vgic| rr(g, ISPENDR0, W) & 1 << 27 != 0;
    // Fired, went into a list register, the guest ran without taking it (interrupts masked),
    // then disabled the timer: the next exit withdraws the copy.
    g.inject_ppi(0, Intid::VTIMER).unwrap();
    assert_eq!(ids(&flush_sync(&mut g, 0, 4)), vec![27]);
    assert!(pending(&mut g));
    let before = g.generation();
    assert_eq!(g.withdraw_ppi(0, Intid::VTIMER), Ok(true));
    assert_ne!(
        g.generation(),
        before,
        "the next flush must rebuild the list registers"
    );
    assert!(!pending(&mut g), "GICR_ISPENDR0 no longer shows it");
    assert!(
        ids(&flush_sync(&mut g, 0, 4)).is_empty(),
        "nothing left to take"
    );
    assert_eq!(
        g.withdraw_ppi(0, Intid::VTIMER),
        Ok(false),
        "nothing to withdraw"
    );
    // Taken (active in the guest): its handler runs and deactivates it; it stays.
    g.inject_ppi(0, Intid::VTIMER).unwrap();
    let f = g.flush(0, 4).unwrap();
    let mut raw = raw_of(&f);
    guest(&mut raw, 27, "ack");
    g.sync(0, &raw).unwrap();
    assert_eq!(g.withdraw_ppi(0, Intid::VTIMER), Ok(false));
    assert_eq!(
        g.flush(0, 4).unwrap().lrs[0].unwrap().state,
        LrState::Active
    );
    assert_eq!(
        g.withdraw_ppi(0, Intid::spi(1)),
        Err(VgicError::NotAPpi {
            intid: Intid::spi(1)
        })
    );
}
