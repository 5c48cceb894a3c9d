//! Parsing QEMU virt's DTB, and blobs built here with one thing wrong each.

use super::*;
use alloc::string::ToString;
use alloc::vec;
use guest_loader::dtb;
use proptest::prelude::*;

/// `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 4 -m 1G
/// -kernel X -initrd X -append "console=ttyAMA0 hyp.log=debug"` with `dumpdtb=`, compacted by
/// a dtc round trip.
const QEMU_VIRT: &[u8] = include_bytes!("testdata/qemu-virt-gicv3-smp4-1g.dtb");

fn region(base: u64, size: u64) -> Region {
    Region {
        base: Pa::new(base),
        size,
    }
}

#[test]
fn qemu_virt_dtb_is_fully_described() {
    let m = Machine::parse(QEMU_VIRT).unwrap();
    assert_eq!(m.memory, vec![region(0x4000_0000, 0x4000_0000)]);
    assert_eq!(
        m.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(m.cpus[2].node, "cpu@2");
    assert_eq!(m.gic.distributor, region(0x0800_0000, 0x1_0000));
    assert_eq!(m.gic.redistributors, vec![region(0x080a_0000, 0xf6_0000)]);
    assert_eq!(m.uart, region(0x0900_0000, 0x1000));
    // QEMU virt wires the PL011 to SPI 1.
    assert_eq!(m.uart_intid, Some(33));
    assert_eq!(
        m.timer,
        TimerIrqs {
            secure_phys: 29,
            phys: 30,
            virt: 27,
            hyp_phys: 26
        }
    );
    assert_eq!(m.psci, PsciMethod::Smc);
    assert_eq!(m.chosen.bootargs, "console=ttyAMA0 hyp.log=debug");
    assert_eq!(m.chosen.stdout_path, Some("/pl011@9000000"));
    assert_eq!(m.chosen.initrd, Some(region(0x4800_0000, 0xe118)));
    assert!(m.chosen.modules.is_empty());
    assert!(m.reserved.is_empty());
    assert_eq!(m.dtb_size, QEMU_VIRT.len() as u64);
    assert_eq!(m.cpu_index(3), Some(3));
    assert_eq!(m.cpu_index(0x100), None);
}

#[test]
fn early_parse_agrees_with_the_full_one() {
    let e = Early::parse(QEMU_VIRT).unwrap();
    assert_eq!(e.memory(), &[region(0x4000_0000, 0x4000_0000)]);
    assert_eq!(e.uart, Some(region(0x0900_0000, 0x1000)));
    assert_eq!(e.dtb_size, QEMU_VIRT.len() as u64);
}

#[test]
fn every_truncation_is_an_error() {
    for len in 0..QEMU_VIRT.len() {
        assert!(
            Machine::parse(&QEMU_VIRT[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
        assert!(
            Early::parse(&QEMU_VIRT[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn bad_magic_and_short_blob_are_named() {
    let mut blob = QEMU_VIRT.to_vec();
    blob[0] = 0;
    assert_eq!(
        Machine::parse(&blob).unwrap_err(),
        DtbError::Invalid(dtb::DtbError::BadMagic { found: 0x000d_feed })
    );
    let err = Machine::parse(&QEMU_VIRT[..100]).unwrap_err();
    assert_eq!(
        err,
        DtbError::Invalid(dtb::DtbError::Truncated {
            len: 100,
            needed: QEMU_VIRT.len()
        })
    );
    assert!(
        err.to_string()
            .starts_with("cannot read the DTB: device tree is truncated: 100 bytes")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    /// Corrupting any bytes of a real DTB gives an error or a description, never a panic.
    #[test]
    fn corrupted_blobs_never_panic(edits in prop::collection::vec((0..QEMU_VIRT.len(), any::<u8>()), 1..8)) {
        let mut blob = QEMU_VIRT.to_vec();
        for (at, byte) in edits {
            blob[at] = byte;
        }
        let _ = Machine::parse(&blob);
        let _ = Early::parse(&blob);
    }

    /// Corrupting the structure and strings blocks specifically (most random edits above hit
    /// property values, which parse either way).
    #[test]
    fn corrupted_structure_words_never_panic(
        edits in prop::collection::vec((0..QEMU_VIRT.len() / 4, 0u32..8), 1..4)
    ) {
        let mut blob = QEMU_VIRT.to_vec();
        for (word, value) in edits {
            blob[word * 4..word * 4 + 4].copy_from_slice(&value.to_be_bytes());
        }
        let _ = Machine::parse(&blob);
        let _ = Early::parse(&blob);
    }
}

/// A minimal flattened-devicetree writer for the error-case blobs.
struct Node {
    name: &'static str,
    props: Vec<(&'static str, Vec<u8>)>,
    children: Vec<Node>,
}

fn node(name: &'static str, props: Vec<(&'static str, Vec<u8>)>, children: Vec<Node>) -> Node {
    Node {
        name,
        props,
        children,
    }
}

fn cells(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|c| c.to_be_bytes()).collect()
}

fn text(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn build(root: &Node) -> Vec<u8> {
    fn emit(n: &Node, st: &mut Vec<u8>, strings: &mut Vec<u8>) {
        st.extend(cells(&[1]));
        st.extend(text(n.name));
        st.resize(st.len().next_multiple_of(4), 0);
        for (name, value) in &n.props {
            let off = strings.len() as u32;
            strings.extend(text(name));
            st.extend(cells(&[3, value.len() as u32, off]));
            st.extend(value);
            st.resize(st.len().next_multiple_of(4), 0);
        }
        for c in &n.children {
            emit(c, st, strings);
        }
        st.extend(cells(&[2]));
    }
    let (mut st, mut strings) = (Vec::new(), Vec::new());
    emit(root, &mut st, &mut strings);
    st.extend(cells(&[9])); // FDT_END
    let rsv = 40u32;
    let off_struct = rsv + 16;
    let off_strings = off_struct + st.len() as u32;
    let total = off_strings + strings.len() as u32;
    let mut blob = cells(&[0xd00d_feed, total, off_struct, off_strings, rsv, 17, 16, 0]);
    blob.extend(cells(&[strings.len() as u32, st.len() as u32]));
    blob.extend([0u8; 16]);
    blob.extend(st);
    blob.extend(strings);
    blob
}

/// A QEMU-virt-like tree; `edit` changes it before it is written.
fn virt_like(edit: impl FnOnce(&mut Node)) -> Vec<u8> {
    let cpu = |name, id| {
        node(
            name,
            vec![
                ("device_type", text("cpu")),
                ("reg", cells(&[id])),
                ("enable-method", text("psci")),
            ],
            vec![],
        )
    };
    let mut root = node(
        "",
        vec![
            ("#address-cells", cells(&[2])),
            ("#size-cells", cells(&[2])),
        ],
        vec![
            node(
                "psci",
                vec![
                    ("compatible", text("arm,psci-1.0")),
                    ("method", text("hvc")),
                ],
                vec![],
            ),
            node(
                "memory@40000000",
                vec![
                    ("device_type", text("memory")),
                    ("reg", cells(&[0, 0x4000_0000, 0, 0x2000_0000])),
                ],
                vec![],
            ),
            node(
                "intc@8000000",
                vec![
                    ("compatible", text("arm,gic-v3")),
                    ("#interrupt-cells", cells(&[3])),
                    (
                        "reg",
                        cells(&[0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0x40_0000]),
                    ),
                ],
                vec![],
            ),
            node(
                "pl011@9000000",
                vec![
                    ("compatible", text("arm,pl011")),
                    ("reg", cells(&[0, 0x0900_0000, 0, 0x1000])),
                ],
                vec![],
            ),
            node(
                "timer",
                vec![
                    ("compatible", text("arm,armv8-timer")),
                    (
                        "interrupts",
                        cells(&[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]),
                    ),
                ],
                vec![],
            ),
            node(
                "reserved-memory",
                vec![
                    ("#address-cells", cells(&[2])),
                    ("#size-cells", cells(&[2])),
                    ("ranges", vec![]),
                ],
                vec![node(
                    "fw@5f000000",
                    vec![("reg", cells(&[0, 0x5f00_0000, 0, 0x10_0000]))],
                    vec![],
                )],
            ),
            node(
                "chosen",
                vec![
                    ("#address-cells", cells(&[2])),
                    ("#size-cells", cells(&[2])),
                    ("bootargs", text("hyp.log=trace")),
                    ("stdout-path", text("serial0:115200n8")),
                ],
                vec![node(
                    "module@50000000",
                    vec![
                        ("compatible", text("multiboot,module")),
                        ("reg", cells(&[0, 0x5000_0000, 0, 0x80_0000])),
                    ],
                    vec![],
                )],
            ),
            node("aliases", vec![("serial0", text("/pl011@9000000"))], vec![]),
            node(
                "cpus",
                vec![
                    ("#address-cells", cells(&[1])),
                    ("#size-cells", cells(&[0])),
                ],
                vec![cpu("cpu@0", 0), cpu("cpu@100", 0x100)],
            ),
        ],
    );
    edit(&mut root);
    build(&root)
}

fn remove(root: &mut Node, name: &str) {
    root.children.retain(|c| c.name != name);
}

fn child<'n>(root: &'n mut Node, name: &str) -> &'n mut Node {
    root.children.iter_mut().find(|c| c.name == name).unwrap()
}

fn set(n: &mut Node, prop: &'static str, value: Vec<u8>) {
    n.props.retain(|(p, _)| *p != prop);
    n.props.push((prop, value));
}

#[test]
fn built_tree_parses_with_aliases_modules_and_reserved_memory() {
    let blob = virt_like(|_| {});
    let m = Machine::parse(&blob).unwrap();
    assert_eq!(m.psci, PsciMethod::Hvc);
    assert_eq!(m.uart, region(0x0900_0000, 0x1000));
    assert_eq!(
        m.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(),
        vec![0, 0x100]
    );
    assert_eq!(m.reserved, vec![region(0x5f00_0000, 0x10_0000)]);
    assert_eq!(m.chosen.modules, vec![region(0x5000_0000, 0x80_0000)]);
    assert_eq!(m.chosen.initrd, None);
}

#[track_caller]
fn assert_error(blob: &[u8], want: DtbError<'_>, text_has: &str) {
    let err = Machine::parse(blob).unwrap_err();
    assert_eq!(err, want);
    assert!(
        err.to_string().contains(text_has),
        "`{err}` lacks `{text_has}`"
    );
}

#[test]
fn missing_nodes_are_named() {
    let cases: [(&str, &str); 5] = [
        ("psci", "psci"),
        ("memory@40000000", "/memory"),
        ("cpus", "/cpus"),
        (
            "intc@8000000",
            "interrupt-controller compatible with arm,gic-v3",
        ),
        ("timer", "timer compatible with arm,armv8-timer"),
    ];
    for (name, named) in cases {
        let blob = virt_like(|r| remove(r, name));
        assert_error(&blob, DtbError::MissingNode { node: named }, named);
    }
    let blob = virt_like(|r| remove(r, "pl011@9000000"));
    assert_error(
        &blob,
        DtbError::MissingNode {
            node: "arm,pl011 UART",
        },
        "the DTB has no arm,pl011 UART node",
    );
    let blob = virt_like(|r| child(r, "cpus").children.clear());
    assert_error(
        &blob,
        DtbError::MissingNode { node: "/cpus/cpu" },
        "/cpus/cpu",
    );
}

#[test]
fn early_parse_needs_memory_but_not_a_uart() {
    let blob = virt_like(|r| remove(r, "pl011@9000000"));
    assert_eq!(Early::parse(&blob).unwrap().uart, None);
    let blob = virt_like(|r| remove(r, "memory@40000000"));
    assert_eq!(
        Early::parse(&blob).unwrap_err(),
        DtbError::MissingNode { node: "/memory" }
    );
}

#[test]
fn bad_properties_name_node_and_property() {
    let blob = virt_like(|r| set(child(r, "psci"), "method", text("firmware")));
    assert_error(
        &blob,
        DtbError::BadProperty {
            node: "psci",
            property: "method",
            why: "it is neither smc nor hvc",
        },
        "DTB node psci has an unusable `method` property",
    );
    let blob = virt_like(|r| child(r, "psci").props.retain(|(p, _)| *p != "method"));
    assert_error(
        &blob,
        DtbError::MissingProperty {
            node: "psci",
            property: "method",
        },
        "has no `method`",
    );

    let blob = virt_like(|r| {
        set(
            child(r, "memory@40000000"),
            "reg",
            cells(&[0, 0x4000_0000, 0]),
        )
    });
    assert_error(
        &blob,
        DtbError::BadProperty {
            node: "memory@40000000",
            property: "reg",
            why: "its length is not a whole number of (address, size) entries",
        },
        "memory@40000000",
    );
    let blob = virt_like(|r| {
        set(
            child(r, "memory@40000000"),
            "reg",
            cells(&[0xffff_ffff, 0xffff_f000, 0, 0x2000]),
        )
    });
    assert_error(
        &blob,
        DtbError::BadProperty {
            node: "memory@40000000",
            property: "reg",
            why: "a region wraps around the address space",
        },
        "wraps",
    );
    let blob = virt_like(|r| {
        child(child(r, "cpus"), "cpu@100")
            .props
            .retain(|(p, _)| *p != "reg")
    });
    assert_error(
        &blob,
        DtbError::MissingProperty {
            node: "cpu@100",
            property: "reg",
        },
        "cpu@100",
    );
    let blob = virt_like(|r| set(child(child(r, "cpus"), "cpu@100"), "reg", cells(&[0])));
    assert_error(
        &blob,
        DtbError::BadProperty {
            node: "cpu@100",
            property: "reg",
            why: "another CPU has the same MPIDR",
        },
        "same MPIDR",
    );
    let blob = virt_like(|r| {
        set(
            child(r, "intc@8000000"),
            "reg",
            cells(&[0, 0x0800_0000, 0, 0x1_0000]),
        )
    });
    assert_error(
        &blob,
        DtbError::BadProperty {
            node: "intc@8000000",
            property: "reg",
            why: "it has fewer entries than the binding requires",
        },
        "intc@8000000",
    );
    let blob = virt_like(|r| {
        set(
            child(r, "timer"),
            "interrupts",
            cells(&[0, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]),
        )
    });
    assert_error(
        &blob,
        DtbError::BadProperty {
            node: "timer",
            property: "interrupts",
            why: "a timer interrupt is not a PPI",
        },
        "timer",
    );
    let blob = virt_like(|r| {
        set(
            child(r, "chosen"),
            "linux,initrd-start",
            cells(&[0x4800_0000]),
        )
    });
    assert_error(
        &blob,
        DtbError::MissingProperty {
            node: "chosen",
            property: "linux,initrd-end",
        },
        "chosen",
    );
}

#[test]
fn initrd_range_comes_from_chosen() {
    let blob = virt_like(|r| {
        let c = child(r, "chosen");
        set(c, "linux,initrd-start", cells(&[0, 0x4800_0000]));
        set(c, "linux,initrd-end", cells(&[0x4810_0000]));
    });
    assert_eq!(
        Machine::parse(&blob).unwrap().chosen.initrd,
        Some(region(0x4800_0000, 0x10_0000))
    );
}

#[test]
fn structure_errors_are_rejected_before_the_parser_sees_them() {
    // A #address-cells shorter than a cell would make the parser panic.
    let blob = virt_like(|r| set(child(r, "cpus"), "#address-cells", vec![0, 1]));
    assert!(matches!(
        Machine::parse(&blob),
        Err(DtbError::Invalid(dtb::DtbError::BadCellCount { .. }))
    ));
    // Too deep for the parser's parent stack.
    let mut deep = node("leaf", vec![], vec![]);
    for _ in 0..70 {
        deep = node("n", vec![], vec![deep]);
    }
    let blob = virt_like(|r| r.children.push(deep));
    assert!(matches!(
        Machine::parse(&blob),
        Err(DtbError::Invalid(dtb::DtbError::BadStructure {
            what: "nodes nested too deeply",
            ..
        }))
    ));
    // A translating bus in front of the UART.
    let blob = virt_like(|r| {
        let uart = r.children.remove(
            r.children
                .iter()
                .position(|c| c.name == "pl011@9000000")
                .unwrap(),
        );
        r.children.push(node(
            "soc",
            vec![("ranges", cells(&[0, 0, 0, 0x1000_0000, 0, 0x1000_0000]))],
            vec![uart],
        ));
    });
    assert!(matches!(
        Machine::parse(&blob),
        Err(DtbError::BadProperty {
            node: "pl011@9000000",
            property: "reg",
            ..
        })
    ));
}
