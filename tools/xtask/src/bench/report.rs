//! The benchmarks' results and how they are shown: a markdown table of native and hypervisor
//! figures with their ratio, one of figures with no native counterpart, one of exits by reason;
//! or all of it as one JSON object for scripts (written here: the xtask has no JSON library).

use std::fmt::Write as _;

/// One measured quantity, natively and under the hypervisor.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Row {
    pub(super) name: String,
    pub(super) unit: String,
    pub(super) native: Option<f64>,
    pub(super) hyp: Option<f64>,
}

impl Row {
    pub(super) fn ratio(&self) -> Option<f64> {
        match (self.native, self.hyp) {
            (Some(n), Some(h)) if n > 0.0 => Some(h / n),
            _ => None,
        }
    }
}

/// One figure measured under the hypervisor only, with how it was derived.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Figure {
    pub(super) name: String,
    pub(super) value: Option<f64>,
    pub(super) unit: String,
    pub(super) method: String,
}

/// What the guest benchmarks measured.
#[derive(Default)]
pub(super) struct Report {
    pub(super) rows: Vec<Row>,
    /// Figures without a native counterpart (dirty logging, migration, snapshots).
    pub(super) figures: Vec<Figure>,
    /// Exits per reason under the hypervisor, per benchmark: `(bench, reason, count)`.
    pub(super) exits: Vec<(String, String, u64)>,
}

pub(super) fn number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => format!("{v:.3}"),
        None => "-".into(),
    }
}

pub(super) fn markdown(report: &Report) -> String {
    let mut s = String::new();
    if !report.rows.is_empty() {
        s.push_str("\n| benchmark | native | under hyp | ratio |\n| --- | ---: | ---: | ---: |\n");
    }
    for r in &report.rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        let _ = writeln!(
            s,
            "| {} | {}{unit} | {}{unit} | {} |",
            r.name,
            number(r.native),
            number(r.hyp),
            r.ratio().map_or("-".into(), |x| format!("{x:.3}"))
        );
    }
    if !report.figures.is_empty() {
        s.push_str("\n| under the hypervisor | value | how |\n| --- | ---: | --- |\n");
        for f in &report.figures {
            let _ = writeln!(
                s,
                "| {} | {} {} | {} |",
                f.name,
                number(f.value),
                f.unit,
                f.method
            );
        }
    }
    if !report.exits.is_empty() {
        s.push_str("\n| run | exit reason | count |\n| --- | --- | ---: |\n");
        for (bench, reason, n) in &report.exits {
            let _ = writeln!(s, "| {bench} | {reason} | {n} |");
        }
    }
    s
}

pub(super) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => number(Some(v)),
        _ => "null".into(),
    }
}

pub(super) fn json(report: &Report) -> String {
    let rows: Vec<String> = report
        .rows
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":{},\"unit\":{},\"native\":{},\"hyp\":{},\"ratio\":{}}}",
                json_str(&r.name),
                json_str(&r.unit),
                json_num(r.native),
                json_num(r.hyp),
                json_num(r.ratio())
            )
        })
        .collect();
    let exits: Vec<String> = report
        .exits
        .iter()
        .map(|(b, r, n)| {
            format!(
                "{{\"run\":{},\"reason\":{},\"count\":{n}}}",
                json_str(b),
                json_str(r)
            )
        })
        .collect();
    let figures: Vec<String> = report
        .figures
        .iter()
        .map(|f| {
            format!(
                "{{\"name\":{},\"value\":{},\"unit\":{},\"method\":{}}}",
                json_str(&f.name),
                json_num(f.value),
                json_str(&f.unit),
                json_str(&f.method)
            )
        })
        .collect();
    format!(
        "{{\"results\":[{}],\"figures\":[{}],\"exits\":[{}]}}",
        rows.join(","),
        figures.join(","),
        exits.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_and_json_show_ratios() {
        let report = Report {
            rows: vec![
                Row {
                    name: "boot".into(),
                    unit: "ticks".into(),
                    native: Some(1000.0),
                    hyp: Some(1050.0),
                },
                Row {
                    name: "only \"hyp\"".into(),
                    unit: String::new(),
                    native: None,
                    hyp: Some(2.5),
                },
            ],
            figures: vec![Figure {
                name: "per page".into(),
                value: Some(31.25),
                unit: "ticks".into(),
                method: "lost / pages".into(),
            }],
            exits: vec![("boot".into(), "hvc".into(), 12)],
        };
        let md = markdown(&report);
        assert!(
            md.contains("| boot | 1000 ticks | 1050 ticks | 1.050 |"),
            "{md}"
        );
        assert!(md.contains("| only \"hyp\" | - | 2.500 | - |"), "{md}");
        assert!(md.contains("| boot | hvc | 12 |"), "{md}");
        assert!(
            md.contains("| per page | 31.250 ticks | lost / pages |"),
            "{md}"
        );
        let figures_only = Report {
            figures: report.figures.clone(),
            ..Report::default()
        };
        let md = markdown(&figures_only);
        assert!(!md.contains("| benchmark |"), "{md}");
        assert!(md.contains("| per page |"), "{md}");
        assert_eq!(
            json(&report),
            "{\"results\":[{\"name\":\"boot\",\"unit\":\"ticks\",\"native\":1000,\"hyp\":1050,\"ratio\":1.050},\
             {\"name\":\"only \\\"hyp\\\"\",\"unit\":\"\",\"native\":null,\"hyp\":2.500,\"ratio\":null}],\
             \"figures\":[{\"name\":\"per page\",\"value\":31.250,\"unit\":\"ticks\",\"method\":\"lost / pages\"}],\
             \"exits\":[{\"run\":\"boot\",\"reason\":\"hvc\",\"count\":12}]}"
        );
    }
}
