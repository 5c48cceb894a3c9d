use super::*;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;

const FIRST: u64 = 0x40000;
const PAGES: u64 = 1000;
const FREQUENCY: u64 = 62_500_000;

fn header() -> Header {
    Header {
        first_gfn: FIRST,
        pages: PAGES,
        frequency: FREQUENCY,
    }
}

/// A file with `harvests` as (start, end, dirty GFNs), laid out by hand from the format's
/// table rather than with the encoders, so the two are checked against each other.
fn file(harvests: &[(u64, u64, &[u64])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"HYPDLOG\0");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&48u32.to_le_bytes());
    for v in [FIRST, PAGES, FREQUENCY, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for &(start, end, gfns) in harvests {
        let bits = bitmap(gfns);
        let count: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
        for v in [start, end, count, bits.len() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for w in bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

fn bitmap(gfns: &[u64]) -> Vec<u64> {
    let mut bits = vec![0u64; PAGES.div_ceil(64) as usize];
    for &g in gfns {
        let f = g - FIRST;
        bits[(f / 64) as usize] |= 1 << (f % 64);
    }
    bits
}

/// 15 harvests every 100 ticks from 1000, each taking 20, each with a few pages dirty (the
/// first none).
fn good() -> Vec<u8> {
    let dirty: Vec<Vec<u64>> = (0..15u64)
        .map(|k| (0..k % 4).map(|i| FIRST + 7 * k + 300 * i).collect())
        .collect();
    let harvests: Vec<(u64, u64, &[u64])> = dirty
        .iter()
        .enumerate()
        .map(|(k, d)| (1000 + 100 * k as u64, 1020 + 100 * k as u64, &d[..]))
        .collect();
    file(&harvests)
}

#[test]
fn the_encoders_write_the_documented_layout() {
    let gfns = [FIRST, FIRST + 63, FIRST + 64, FIRST + PAGES - 1];
    let bits = bitmap(&gfns);
    let mut bytes = header().encode().to_vec();
    let record = Record {
        start: 1000,
        end: 1020,
        count: 4,
        bits: &bits,
    };
    record.encode_into(&mut bytes);
    assert_eq!(bytes, file(&[(1000, 1020, &gfns)]));
    assert_eq!(bytes.len(), HEADER_LEN + record.encoded_len());
    assert_eq!(record.encoded_len(), RECORD_HEAD_LEN + 8 * 16);
    // The count is written as given, not recomputed from the bitmap.
    let mut odd = Vec::new();
    Record {
        start: 1,
        end: 2,
        count: 99,
        bits: &[0b101],
    }
    .encode_into(&mut odd);
    assert_eq!(odd[16..24], 99u64.to_le_bytes());
    assert_eq!(odd[24..32], 1u64.to_le_bytes());
    assert_eq!(odd[32..], 0b101u64.to_le_bytes());
}

#[test]
fn records_read_back_as_written() {
    let dirty = [FIRST, FIRST + 64 * 3 + 5, FIRST + PAGES - 1];
    let mut bytes = header().encode().to_vec();
    for (start, gfns) in [(100, &dirty[..]), (200, &[][..]), (300, &dirty[1..2])] {
        let bits = bitmap(gfns);
        Record {
            start,
            end: start + 10,
            count: gfns.len() as u64,
            bits: &bits,
        }
        .encode_into(&mut bytes);
    }
    let log = DirtyLog::parse(&bytes).unwrap();
    assert_eq!(log.header, header());
    assert_eq!(log.header.words(), 16);
    assert_eq!(log.trailing, 0);
    let times: Vec<(u64, u64)> = log.harvests.iter().map(|h| (h.start, h.end)).collect();
    assert_eq!(times, [(100, 110), (200, 210), (300, 310)]);
    let dirty_frames = |h: &Harvest| -> Vec<u64> { (0..PAGES).filter(|&f| h.dirty(f)).collect() };
    assert_eq!(dirty_frames(&log.harvests[0]), [0, 64 * 3 + 5, PAGES - 1]);
    assert!(dirty_frames(&log.harvests[1]).is_empty());
    assert_eq!(dirty_frames(&log.harvests[2]), [64 * 3 + 5]);
    // Frames past the bitmap are never dirty.
    assert!(!log.harvests[0].dirty(64 * 16));
}

#[test]
fn a_partial_last_record_is_ignored() {
    let mut bytes = good();
    let whole = bytes.len();
    bytes.extend_from_slice(&file(&[(5000, 5020, &[])])[HEADER_LEN..][..100]);
    let log = DirtyLog::parse(&bytes).unwrap();
    assert_eq!((log.harvests.len(), log.trailing), (15, 100));
    bytes.truncate(whole + 7);
    assert_eq!(DirtyLog::parse(&bytes).unwrap().trailing, 7);
    assert_eq!(DirtyLog::parse(&bytes).unwrap().harvests.len(), 15);
    let log = DirtyLog::parse(&header().encode()).unwrap();
    assert!(log.harvests.is_empty() && log.trailing == 0);
}

#[test]
fn malformed_dirty_logs_are_refused_with_the_reason() {
    let good = good();
    let err = |bytes: &[u8]| DirtyLog::parse(bytes).unwrap_err().to_string();
    assert!(err(&good[..47]).contains("truncated header"));
    let mut b = good.clone();
    b[0] = b'X';
    assert!(err(&b).contains("bad magic"));
    let mut b = good.clone();
    b[8] = 2;
    assert!(err(&b).contains("version 2"));
    let mut b = good.clone();
    b[12] = 56;
    assert!(err(&b).contains("header length 56"));
    let mut b = good.clone();
    b[24..32].fill(0);
    assert!(err(&b).contains("0 guest pages"));
    // Record 0's count, word count, times; and record order.
    let mut b = good.clone();
    b[HEADER_LEN + 16] ^= 1;
    assert!(
        err(&b).contains("record 0 (at byte 48): count"),
        "{}",
        err(&b)
    );
    let mut b = good.clone();
    b[HEADER_LEN + 24] = 15;
    assert!(
        err(&b).contains("15 bitmap words, and 1000 pages take 16"),
        "{}",
        err(&b)
    );
    let mut b = good.clone();
    b[HEADER_LEN + 8..HEADER_LEN + 16].copy_from_slice(&5u64.to_le_bytes());
    assert!(
        err(&b).contains("ends (5) before it starts (1000)"),
        "{}",
        err(&b)
    );
    let unordered = file(&[(1000, 1020, &[]), (1010, 1030, &[])]);
    assert!(err(&unordered).contains("record 1"), "{}", err(&unordered));
    let beyond = file(&[(1000, 1020, &[FIRST + PAGES])]);
    assert!(err(&beyond).contains("beyond the last guest page"));
}

/// The messages are what `cargo xtask dirty-check` prints after `dirty log: `.
#[test]
fn errors_read_as_sentences() {
    let cases: &[(DirtyLogError, &str)] = &[
        (
            DirtyLogError::TruncatedHeader { len: 47 },
            "truncated header: the file has 47 bytes, the header takes 48",
        ),
        (
            DirtyLogError::BadMagic(*b"XYPDLOG\0"),
            "bad magic \"XYPDLOG\\0\" (expected \"HYPDLOG\\0\"): not a dirty-log file",
        ),
        (
            DirtyLogError::Version(2),
            "version 2, and this checker reads version 1",
        ),
        (
            DirtyLogError::HeaderLen(56),
            "header length 56, and version 1 has 48",
        ),
        (
            DirtyLogError::EmptyHeader {
                pages: 0,
                frequency: 62_500_000,
            },
            "the header says 0 guest pages and a counter of 62500000 Hz",
        ),
        (
            DirtyLogError::Record {
                index: 1,
                at: 208,
                why: RecordError::StartsBeforePrevious {
                    start: 1010,
                    previous_end: 1020,
                },
            },
            "record 1 (at byte 208): starts at 1010, before the previous harvest ended (1020)",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(format!("{e}"), *want);
    }
    let b = good();
    let mut bad_magic = b.clone();
    bad_magic[..8].copy_from_slice(b"HYP\xffLOG\0");
    assert_eq!(
        DirtyLog::parse(&bad_magic).unwrap_err().to_string(),
        "bad magic \"HYP\u{fffd}LOG\\0\" (expected \"HYPDLOG\\0\"): not a dirty-log file"
    );
    let records: &[(RecordError, &str)] = &[
        (
            RecordError::WordCount {
                words: 15,
                pages: 1000,
                want: 16,
            },
            "15 bitmap words, and 1000 pages take 16",
        ),
        (
            RecordError::EndsBeforeStart {
                start: 1000,
                end: 5,
            },
            "ends (5) before it starts (1000)",
        ),
        (
            RecordError::BitsBeyondRam,
            "bits set beyond the last guest page",
        ),
        (
            RecordError::Count { count: 1, set: 0 },
            "count 1, and 0 bits are set",
        ),
    ];
    for (e, want) in records {
        assert_eq!(format!("{e}"), *want);
    }
}
