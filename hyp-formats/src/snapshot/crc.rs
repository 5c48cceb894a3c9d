//! CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, initial value and final XOR
//! 0xFFFFFFFF; the CRC of zlib, PNG and `cksum -a crc32b`), slicing-by-8 so checksumming guest
//! RAM costs about one table lookup per byte, and [`combine`], which joins the CRCs of two
//! adjacent pieces without reading them again (the writer checksums page data once for both
//! the section CRC and the file CRC).

/// The reflected CRC-32 polynomial.
const POLY: u32 = 0xedb8_8320;

/// `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC of byte `b` followed by
/// `k` zero bytes, so eight bytes are folded in with eight independent lookups.
static TABLES: [[u32; 256]; 8] = make_tables();

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut c = b as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        t[0][b] = c;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// A running CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    pub const fn new() -> Self {
        Self(!0)
    }

    /// A running CRC that continues from a finished CRC value (e.g. one from [`combine`]).
    pub const fn resume(value: u32) -> Self {
        Self(!value)
    }

    /// Continues the CRC over `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        let (chunks, rest) = bytes.as_chunks::<8>();
        for w in chunks {
            let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ c;
            c = TABLES[7][(lo & 0xff) as usize]
                ^ TABLES[6][((lo >> 8) & 0xff) as usize]
                ^ TABLES[5][((lo >> 16) & 0xff) as usize]
                ^ TABLES[4][(lo >> 24) as usize]
                ^ TABLES[3][w[4] as usize]
                ^ TABLES[2][w[5] as usize]
                ^ TABLES[1][w[6] as usize]
                ^ TABLES[0][w[7] as usize];
        }
        for &b in rest {
            c = (c >> 8) ^ TABLES[0][((c ^ u32::from(b)) & 0xff) as usize];
        }
        self.0 = c;
    }

    /// The CRC of everything passed to [`Crc32::update`] so far.
    pub const fn value(&self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.value()
}

/// `a * b` modulo the CRC polynomial, both in the reflected representation (bit 31 is x^0).
const fn mult_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        if m == 0 {
            return p;
        }
    }
}

/// `X2N[k]` is x^(2^k) modulo the polynomial; x^(8n) (n zero bytes) is a product of these.
static X2N: [u32; 64] = {
    let mut t = [0u32; 64];
    t[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < 64 {
        t[k] = mult_mod_p(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// The CRC-32 of `A ‖ B` from `crc_a` = CRC-32(A), `crc_b` = CRC-32(B) and `len_b` = |B|:
/// shifting A's remainder past `len_b` zero bytes is a multiplication by x^(8·len_b).
pub fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut shift = 1u32 << 31; // x^0
    let mut n = len_b;
    let mut k = 3; // 8 bits per byte: x^(8n) = x^(n·2^3)
    while n != 0 {
        if n & 1 != 0 {
            shift = mult_mod_p(X2N[k & 63], shift);
        }
        n >>= 1;
        k += 1;
    }
    mult_mod_p(shift, crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// Bit-at-a-time reference, straight from the definition.
    fn slow(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn check_value_of_the_standard() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    proptest! {
        #[test]
        fn slicing_matches_bitwise_and_split_updates(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(crc32(&bytes), slow(&bytes));
            let cut = cut.index(bytes.len() + 1);
            let mut c = Crc32::new();
            c.update(&bytes[..cut]);
            c.update(&bytes[cut..]);
            prop_assert_eq!(c.value(), slow(&bytes));
        }

        #[test]
        fn combine_equals_crc_of_concatenation(
            a in prop::collection::vec(any::<u8>(), 0..100),
            b in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(combine(crc32(&a), crc32(&b), b.len() as u64), crc32(&whole));
        }
    }
}
