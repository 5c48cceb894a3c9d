use super::*;
use alloc::string::String;
use alloc::vec::Vec;

fn collect(f: impl FnOnce(LineSink<'_>)) -> Vec<String> {
    let mut lines = Vec::new();
    f(&mut |args| lines.push(alloc::fmt::format(args)));
    lines
}

fn vm(n: u16) -> VmNumber {
    VmNumber::new(n).unwrap()
}

#[test]
fn sizes_pick_the_largest_unit_and_round_down() {
    let cases = [
        (0, "0 B"),
        (100, "100 B"),
        (1023, "1023 B"),
        (4096, "4 KiB"),
        (1536, "1.5 KiB"),
        (512 << 20, "512 MiB"),
        (3 << 29, "1.5 GiB"),
        ((1 << 30) - 1, "1023.9 MiB"),
        (5 << 40, "5 TiB"),
        (u64::MAX, "16777215.9 TiB"),
    ];
    for (bytes, want) in cases {
        assert_eq!(alloc::format!("{}", Size(bytes)), want, "{bytes}");
    }
    assert_eq!(alloc::format!("[{:>9}]", Size(4096)), "[    4 KiB]");
}

#[test]
fn vms_table() {
    let rows = [
        VmRow {
            number: vm(1),
            name: "domU1",
            vcpus: 2,
            memory: 512 << 20,
            state: RunState::Running,
            console: true,
        },
        VmRow {
            number: vm(2),
            name: "domU2",
            vcpus: 1,
            memory: 64 << 20,
            state: RunState::Paused,
            console: false,
        },
    ];
    assert_eq!(
        collect(|out| vms(&rows, out)),
        [
            " VM   NAME         VCPUS      MEMORY  STATE",
            "  1*  domU1            2     512 MiB  running",
            "  2   domU2            1      64 MiB  paused",
        ]
    );
}

#[test]
fn vcpus_table() {
    let rows = [
        VcpuRow {
            index: 0,
            pcpu: Some(0),
            state: VcpuState::Running,
            pc: 0xffff_8000_0801_0000,
            exits: 123_456,
        },
        VcpuRow {
            index: 1,
            pcpu: None,
            state: VcpuState::Off,
            pc: 0,
            exits: 0,
        },
    ];
    assert_eq!(
        collect(|out| vcpus(vm(1), "domU1", &rows, out)),
        [
            "VM 1 (domU1): 2 vCPUs",
            "VCPU   CPU  STATE    PC                        EXITS",
            "   0     0  running  0xffff800008010000       123456",
            "   1     -  off      0x0000000000000000            0",
        ]
    );
}

#[test]
fn stats_list_reasons_with_counts_and_the_memory_counters() {
    let exits = [("data abort", 120), ("hvc", 0), ("wfi", u64::MAX)];
    let s = VmStats {
        exits: &exits,
        stage2_faults: 7,
        tlb_invalidations: 3,
        dirty_pages: Some(42),
    };
    assert_eq!(
        collect(|out| vm_stats(vm(2), "domU2", &s, out)),
        [
            "VM 2 (domU2)",
            "exits               18446744073709551615",
            "  data abort                 120",
            "  wfi               18446744073709551615",
            "stage-2 faults                 7",
            "TLB invalidations              3",
            "dirty pages                   42",
        ]
    );
    let s = VmStats {
        dirty_pages: None,
        ..s
    };
    let lines = collect(|out| vm_stats(vm(2), "domU2", &s, out));
    assert_eq!(lines.last().unwrap(), "dirty pages                  off");
}

#[test]
fn mem_shows_frames_per_state_and_table_pages() {
    let frames = [("free", 1000), ("hyp", 24), ("guest", 131_072)];
    let s = MemStats {
        frames: &frames,
        frame_size: 4096,
        table_pages: 70,
    };
    assert_eq!(
        collect(|out| mem(&s, out)),
        [
            "frames free                 1000     3.9 MiB",
            "frames hyp                    24      96 KiB",
            "frames guest              131072     512 MiB",
            "frames total              132096     516 MiB",
            "stage-2 table pages           70     280 KiB",
        ]
    );
}

#[test]
fn dirty_stats_lines() {
    let s = DirtyStats {
        logging: true,
        dirty_pages: 5,
        harvests: 2,
        harvested_pages: 900,
    };
    assert_eq!(
        collect(|out| dirty_stats(vm(1), &s, out)),
        [
            "VM 1: dirty logging on",
            "dirty pages                    5",
            "harvests                       2",
            "harvested pages              900",
        ]
    );
}

#[test]
fn snapshot_report_is_one_key_value_line() {
    let rounds = [1000, 40, 7];
    let r = SnapshotReport {
        file: "a.snap",
        live: true,
        diff: false,
        rounds: &rounds,
        paused_pages: 2,
        paused_us: 830,
        file_bytes: 4_321_280,
    };
    assert_eq!(
        collect(|out| snapshot_report(&r, out)),
        [
            "snapshot a.snap: live rounds=3 round_pages=1000,40,7 paused_pages=2 paused_us=830 total_pages=1049 bytes=4321280"
        ]
    );
    let r = SnapshotReport {
        live: false,
        diff: true,
        rounds: &[],
        ..r
    };
    assert_eq!(
        collect(|out| snapshot_report(&r, out)),
        [
            "snapshot a.snap: diff rounds=0 round_pages=- paused_pages=2 paused_us=830 total_pages=2 bytes=4321280"
        ]
    );
}

#[test]
fn a_long_pre_copy_is_summarised() {
    let rounds: Vec<u64> = (1..=40).collect();
    let r = SnapshotReport {
        file: "b",
        live: true,
        diff: true,
        rounds: &rounds,
        paused_pages: u64::MAX,
        paused_us: 1,
        file_bytes: 0,
    };
    let lines = collect(|out| snapshot_report(&r, out));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains(
            "live diff rounds=40 round_pages=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,+24 "
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(" total_pages=18446744073709551615 "),
        "{}",
        lines[0]
    );
}
