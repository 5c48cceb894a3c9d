//! Figures read from a run's console output: the guest's own lines (the init banner's counter,
//! the `bench` guest's results) and the hypervisor's (the VM's counter offset, exits by reason),
//! wherever the console's `domU1| ` prefix puts them.

const BANNER: &str = "init: banner at cntvct=";
const COUNTER_OFFSET: &str = ": virtual counter offset ";

/// The counter value of the init banner, wherever the console prefix puts it.
pub(super) fn banner_ticks(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let at = l.find(BANNER)? + BANNER.len();
        l[at..].trim().parse().ok()
    })
}

/// The hypervisor's `<domain>: virtual counter offset N` for the first domain.
pub(super) fn counter_offset(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let at = l.find(COUNTER_OFFSET)? + COUNTER_OFFSET.len();
        l[at..].split_whitespace().next()?.parse().ok()
    })
}

/// `bench: <name> = <value> <unit>` lines, in order.
pub(super) fn guest_lines(output: &str) -> Vec<(String, f64, String)> {
    output
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("bench: ")? + "bench: ".len()..];
            let (name, value) = rest.split_once(" = ")?;
            let mut words = value.split_whitespace();
            let number = words.next()?.parse().ok()?;
            let unit = words.next().unwrap_or("").to_string();
            Some((name.trim().to_string(), number, unit))
        })
        .collect()
}

/// The exit counts of `<domain>: powered off; exits: a=1 b=2 (3 total)`.
pub(super) fn exits(output: &str) -> Vec<(String, u64)> {
    let Some(line) = output
        .lines()
        .find(|l| l.contains(": powered off; exits: "))
    else {
        return Vec::new();
    };
    let list = &line[line.find("exits: ").expect("matched above") + "exits: ".len()..];
    let mut out: Vec<(String, u64)> = list
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    if let Some(total) = list
        .find('(')
        .and_then(|at| list[at + 1..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
    {
        out.push(("total".into(), total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYP_LOG: &str = "\
[    0.1] cpu0 INFO  domU1: virtual counter offset 123456
domU1| [    1.0] Run /init as init process
domU1| init: banner at cntvct=1000
[    2.0] cpu0 INFO  domU1: powered off; exits: hvc=12 s2-fault-mapped=33 mmio=38352 irq=812 (39209 total), 3 stage-2 table pages
";

    #[test]
    fn boot_figures_are_read_from_the_logs() {
        assert_eq!(banner_ticks(HYP_LOG), Some(1000));
        assert_eq!(banner_ticks("init: banner at cntvct=77\n"), Some(77));
        assert_eq!(banner_ticks("init: banner at cntvct=\n"), None);
        assert_eq!(counter_offset(HYP_LOG), Some(123_456));
        assert_eq!(counter_offset("nothing"), None);
        assert_eq!(
            exits(HYP_LOG),
            [
                ("hvc".to_string(), 12),
                ("s2-fault-mapped".into(), 33),
                ("mmio".into(), 38352),
                ("irq".into(), 812),
                ("total".into(), 39209)
            ]
        );
        assert!(exits("no exits line").is_empty());
    }

    /// A stand-in for QEMU (it ignores QEMU's arguments): prints `first` in one write, answers
    #[test]
    fn guest_bench_lines_parse_and_junk_is_skipped() {
        let out = "domU1| bench: hvc round trip = 1234 ticks\nbench: timer latency = 5.5 us\nbench: broken = x ticks\nbench without colon\n";
        assert_eq!(
            guest_lines(out),
            [
                ("hvc round trip".to_string(), 1234.0, "ticks".to_string()),
                ("timer latency".into(), 5.5, "us".into())
            ]
        );
    }
}
