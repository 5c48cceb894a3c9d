//! Virtual ARM PrimeCell UART (PL011, TRM DDI 0183), enough for Linux's `amba-pl011` driver
//! and an interactive console: transmitted bytes go straight to a [`SerialOut`] sink (the
//! transmit FIFO drains instantly, so it is never full or busy), received bytes are pushed in
//! by the glue from the physical UART into a 32-entry receive FIFO, and the combined
//! interrupt output is [`Pl011::irq_level`], which the glue feeds to the vGIC as SPI 1.
//!
//! Interrupt model (RIS bits):
//! - TXRIS is set each time a byte is written to DR (the FIFO at once falls back through its
//!   trigger level, the edge the TRM describes) and cleared by ICR. Linux fills the FIFO,
//!   then unmasks TXIM and expects that interrupt; it masks TXIM when it has nothing left.
//! - RXRIS: receive FIFO at or above the IFLS trigger level (one byte with FIFOs disabled).
//! - RTRIS: data waits in the receive FIFO (the 32-bit-period timeout is taken as elapsed).
//!   ICR clears RXRIS/RTRIS until the next byte arrives; reading the FIFO empty clears them.
//! - OERIS: a byte arrived with the FIFO full (and was lost); cleared by ICR.
//!
//! Deliberate differences from silicon: DR writes transmit even when UARTEN/TXE are clear
//! (QEMU does the same, and early consoles rely on firmware having enabled the UART);
//! baud rate and line settings are stored, not acted on; no modem lines, no DMA.
#![forbid(unsafe_code)]

use crate::vdev::mmio::{AccessSize, MmioDevice, MmioError, check_access};

/// Size of the PL011 MMIO window.
pub const PL011_SIZE: u64 = 0x1000;
/// Depth of the receive FIFO (with LCR_H.FEN set).
pub const RX_FIFO_DEPTH: usize = 32;

/// Where transmitted bytes go (the physical console).
pub trait SerialOut {
    fn write_byte(&mut self, byte: u8);
}

impl<F: FnMut(u8)> SerialOut for F {
    fn write_byte(&mut self, byte: u8) {
        self(byte)
    }
}

// Register offsets.
const DR: u64 = 0x000;
const RSR_ECR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;
const ID_BASE: u64 = 0xfe0;

/// PeriphID0..3 then PCellID0..3: part 0x011, designer ARM, revision r1p5; what the AMBA bus
/// reads to bind `amba-pl011`.
pub const ID_REGISTERS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// FR bits.
pub const FR_BUSY: u32 = 1 << 3;
pub const FR_RXFE: u32 = 1 << 4;
pub const FR_TXFF: u32 = 1 << 5;
pub const FR_RXFF: u32 = 1 << 6;
pub const FR_TXFE: u32 = 1 << 7;

// Interrupt bits (RIS/MIS/IMSC/ICR).
pub const INT_RX: u32 = 1 << 4;
pub const INT_TX: u32 = 1 << 5;
pub const INT_RT: u32 = 1 << 6;
pub const INT_OE: u32 = 1 << 10;
const INT_ALL: u32 = 0x7ff;

// CR and LCR_H bits.
pub const CR_UARTEN: u32 = 1 << 0;
pub const CR_LBE: u32 = 1 << 7;
pub const CR_TXE: u32 = 1 << 8;
pub const CR_RXE: u32 = 1 << 9;
pub const LCR_H_FEN: u32 = 1 << 4;

/// RSR.OE: overrun error.
const RSR_OE: u32 = 1 << 3;

/// The virtual PL011.
#[derive(Clone, Debug)]
pub struct Pl011<O> {
    out: O,
    rx: [u8; RX_FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    /// Latched RIS bits (TX, OE).
    latched: u32,
    /// RX/RT bits cleared through ICR since the last received byte.
    rx_acked: u32,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl<O: SerialOut> Pl011<O> {
    /// A PL011 in its reset state (CR = TXE | RXE, IFLS = half/half, everything masked).
    pub fn new(out: O) -> Self {
        Self {
            out,
            rx: [0; RX_FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            latched: 0,
            rx_acked: 0,
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_TXE | CR_RXE,
            ifls: 0x12,
            imsc: 0,
            dmacr: 0,
        }
    }

    /// Hands a byte received on the physical UART to the guest. Returns `false` when it was
    /// lost: the receiver is disabled (UARTEN or RXE clear), or the FIFO is full (an overrun,
    /// which the guest sees in RSR and OERIS).
    pub fn push_rx(&mut self, byte: u8) -> bool {
        if self.cr & (CR_UARTEN | CR_RXE) != CR_UARTEN | CR_RXE {
            return false;
        }
        if self.rx_len >= self.rx_capacity() {
            self.rsr |= RSR_OE;
            self.latched |= INT_OE;
            return false;
        }
        self.rx[(self.rx_head + self.rx_len) % RX_FIFO_DEPTH] = byte;
        self.rx_len += 1;
        self.rx_acked = 0;
        true
    }

    /// How many more bytes [`Pl011::push_rx`] accepts now (for flow control from the glue).
    pub fn rx_space(&self) -> usize {
        self.rx_capacity().saturating_sub(self.rx_len)
    }

    /// The UART's combined interrupt output (UARTINTR): some unmasked interrupt is raised.
    pub fn irq_level(&self) -> bool {
        self.mis() != 0
    }

    /// The output sink, the UART itself discarded (to reset it: `Pl011::new(u.into_output())`).
    pub fn into_output(self) -> O {
        self.out
    }

    /// The output sink.
    pub fn output(&mut self) -> &mut O {
        &mut self.out
    }

    fn fifo_enabled(&self) -> bool {
        self.lcr_h & LCR_H_FEN != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            RX_FIFO_DEPTH
        } else {
            1
        }
    }

    /// Receive trigger level from IFLS.RXIFLSEL: 1/8, 1/4, 1/2, 3/4, 7/8 full.
    fn rx_trigger(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        match (self.ifls >> 3) & 7 {
            0 => 4,
            1 => 8,
            2 => 16,
            3 => 24,
            _ => 28,
        }
    }

    fn ris(&self) -> u32 {
        let mut ris = self.latched;
        if self.rx_len >= self.rx_trigger() {
            ris |= INT_RX;
        }
        if self.rx_len > 0 {
            ris |= INT_RT;
        }
        ris & !self.rx_acked
    }

    fn mis(&self) -> u32 {
        self.ris() & self.imsc
    }

    fn fr(&self) -> u32 {
        let mut fr = FR_TXFE;
        if self.rx_len == 0 {
            fr |= FR_RXFE;
        }
        if self.rx_len >= self.rx_capacity() {
            fr |= FR_RXFF;
        }
        fr
    }

    fn pop_rx(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let b = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_FIFO_DEPTH;
        self.rx_len -= 1;
        u32::from(b)
    }

    fn transmit(&mut self, byte: u8) {
        if self.cr & CR_LBE != 0 {
            // Loopback: the byte comes back on the receive side instead of leaving the UART.
            let cr = self.cr;
            self.cr |= CR_UARTEN | CR_RXE;
            self.push_rx(byte);
            self.cr = cr;
        } else {
            self.out.write_byte(byte);
        }
        self.latched |= INT_TX;
    }

    fn decode(offset: u64, size: AccessSize) -> Result<(), MmioError> {
        check_access(offset, size, PL011_SIZE)?;
        // 8-, 16- and 32-bit accesses at a register's offset (Linux's driver uses 16-bit ones
        // for Arm's part, its earlycon 8- or 32-bit); nothing inside a register or 64-bit.
        if size == AccessSize::Double || !offset.is_multiple_of(4) {
            return Err(MmioError::BadWidth { offset, size });
        }
        Ok(())
    }

    /// The UART's state for a snapshot, [`PL011_STATE_LEN`] bytes, little-endian: magic
    /// `"UART"`, u32 version 1, u32 receive-FIFO fill (0..=32), 32 FIFO bytes oldest first
    /// (unused ones zero), then u32 each: latched RIS bits (TX, OE), RX/RT bits cleared by ICR
    /// since the last received byte, RSR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS, IMSC, DMACR
    /// (each within the bits a register write keeps).
    pub fn save_state(&self) -> [u8; PL011_STATE_LEN] {
        let mut b = [0u8; PL011_STATE_LEN];
        b[0..4].copy_from_slice(&STATE_MAGIC);
        b[4..8].copy_from_slice(&PL011_STATE_VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&(self.rx_len as u32).to_le_bytes());
        for i in 0..self.rx_len.min(RX_FIFO_DEPTH) {
            b[12 + i] = self.rx[(self.rx_head + i) % RX_FIFO_DEPTH];
        }
        for (i, (v, _, _)) in self.state_regs().iter().enumerate() {
            b[STATE_REGS_AT + 4 * i..][..4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// A UART with the state `bytes` (from [`Pl011::save_state`]) writing to `out`.
    ///
    /// # Errors
    /// [`Pl011StateError`]: wrong length, magic or version, or a field out of range.
    pub fn load_state(out: O, bytes: &[u8]) -> Result<Self, Pl011StateError> {
        let b: &[u8; PL011_STATE_LEN] = bytes.try_into().map_err(|_| Pl011StateError::Length {
            len: bytes.len(),
            expected: PL011_STATE_LEN,
        })?;
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if b[0..4] != STATE_MAGIC {
            return Err(Pl011StateError::BadMagic);
        }
        if word(4) != PL011_STATE_VERSION {
            return Err(Pl011StateError::Version {
                found: word(4),
                supported: PL011_STATE_VERSION,
            });
        }
        let rx_len = word(8) as usize;
        if rx_len > RX_FIFO_DEPTH {
            return Err(Pl011StateError::Field {
                offset: 8,
                field: "receive FIFO fill",
                value: word(8),
            });
        }
        if let Some(i) = b[12 + rx_len..12 + RX_FIFO_DEPTH]
            .iter()
            .position(|&x| x != 0)
        {
            return Err(Pl011StateError::Field {
                offset: 12 + rx_len + i,
                field: "unused receive FIFO byte",
                value: u32::from(b[12 + rx_len + i]),
            });
        }
        let mut u = Self::new(out);
        u.rx[..RX_FIFO_DEPTH].copy_from_slice(&b[12..12 + RX_FIFO_DEPTH]);
        u.rx_len = rx_len;
        let mut regs = [0u32; STATE_REGS];
        for (i, (r, (_, mask, name))) in regs.iter_mut().zip(u.state_regs()).enumerate() {
            let at = STATE_REGS_AT + 4 * i;
            *r = word(at);
            if *r & !mask != 0 {
                return Err(Pl011StateError::Field {
                    offset: at,
                    field: name,
                    value: *r,
                });
            }
        }
        let [
            latched,
            rx_acked,
            rsr,
            ilpr,
            ibrd,
            fbrd,
            lcr_h,
            cr,
            ifls,
            imsc,
            dmacr,
        ] = regs;
        u.latched = latched;
        u.rx_acked = rx_acked;
        u.rsr = rsr;
        u.ilpr = ilpr;
        u.ibrd = ibrd;
        u.fbrd = fbrd;
        u.lcr_h = lcr_h;
        u.cr = cr;
        u.ifls = ifls;
        u.imsc = imsc;
        u.dmacr = dmacr;
        Ok(u)
    }

    /// The saved registers in state order: value, bits the model can hold, name.
    fn state_regs(&self) -> [(u32, u32, &'static str); STATE_REGS] {
        [
            (self.latched, INT_TX | INT_OE, "latched RIS"),
            (self.rx_acked, INT_RX | INT_RT, "ICR-acknowledged RX bits"),
            (self.rsr, RSR_OE, "RSR"),
            (self.ilpr, 0xff, "ILPR"),
            (self.ibrd, 0xffff, "IBRD"),
            (self.fbrd, 0x3f, "FBRD"),
            (self.lcr_h, 0xff, "LCR_H"),
            (self.cr, 0xff87, "CR"),
            (self.ifls, 0x3f, "IFLS"),
            (self.imsc, INT_ALL, "IMSC"),
            (self.dmacr, 0x7, "DMACR"),
        ]
    }
}

/// The UART state layout version [`Pl011::save_state`] writes and `load_state` reads.
pub const PL011_STATE_VERSION: u32 = 1;
const STATE_MAGIC: [u8; 4] = *b"UART";
const STATE_REGS: usize = 11;
const STATE_REGS_AT: usize = 12 + RX_FIFO_DEPTH;
/// Bytes in a saved UART state.
pub const PL011_STATE_LEN: usize = STATE_REGS_AT + 4 * STATE_REGS;

/// Why a saved UART state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pl011StateError {
    Length {
        len: usize,
        expected: usize,
    },
    BadMagic,
    Version {
        found: u32,
        supported: u32,
    },
    /// A field with bits the model never holds, at `offset` in the state.
    Field {
        offset: usize,
        field: &'static str,
        value: u32,
    },
}

impl core::fmt::Display for Pl011StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Length { len, expected } => write!(
                f,
                "cannot load the PL011 state: {len} bytes, version {PL011_STATE_VERSION} has {expected}"
            ),
            Self::BadMagic => write!(
                f,
                "cannot load the PL011 state: it does not start with \"UART\""
            ),
            Self::Version { found, supported } => write!(
                f,
                "cannot load PL011 state version {found}: this hypervisor reads version {supported}"
            ),
            Self::Field {
                offset,
                field,
                value,
            } => write!(
                f,
                "cannot load the PL011 state: {field} at offset {offset} is out of range ({value:#x})"
            ),
        }
    }
}

impl<O: SerialOut> MmioDevice for Pl011<O> {
    fn read(&mut self, _vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        Self::decode(offset, size)?;
        let v = match offset {
            DR => self.pop_rx(),
            RSR_ECR => self.rsr,
            FR => self.fr(),
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.ris(),
            MIS => self.mis(),
            DMACR => self.dmacr,
            ID_BASE..PL011_SIZE => u32::from(ID_REGISTERS[((offset - ID_BASE) / 4) as usize]),
            _ => 0, // ICR is write-only; reserved offsets read as zero
        };
        Ok(u64::from(v) & size.mask())
    }

    fn write(
        &mut self,
        _vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        Self::decode(offset, size)?;
        let v = (value & size.mask()) as u32;
        match offset {
            DR => self.transmit(v as u8),
            RSR_ECR => self.rsr = 0, // any write clears the error flags
            ILPR => self.ilpr = v & 0xff,
            IBRD => self.ibrd = v & 0xffff,
            FBRD => self.fbrd = v & 0x3f,
            LCR_H => self.lcr_h = v & 0xff,
            CR => self.cr = v & 0xff87,
            IFLS => self.ifls = v & 0x3f,
            IMSC => self.imsc = v & INT_ALL,
            ICR => {
                self.latched &= !v;
                self.rx_acked |= v & (INT_RX | INT_RT);
            }
            DMACR => self.dmacr = v & 0x7,
            _ => {} // FR, RIS, MIS and the ID registers are read-only; reserved offsets WI
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const W: AccessSize = AccessSize::Word;
    const H: AccessSize = AccessSize::Half;

    type Uart = Pl011<Vec<u8>>;

    impl SerialOut for Vec<u8> {
        fn write_byte(&mut self, byte: u8) {
            self.push(byte)
        }
    }

    fn r(u: &mut Uart, off: u64) -> u32 {
        u.read(0, off, W).unwrap() as u32
    }

    fn w(u: &mut Uart, off: u64, v: u32) {
        u.write(0, off, W, u64::from(v)).unwrap()
    }

    /// What Linux's pl011_startup and set_termios leave behind: 8N1 with FIFOs, UART on,
    /// RX and RX-timeout interrupts unmasked.
    fn linux_started() -> Uart {
        let mut u = Pl011::new(Vec::new());
        w(&mut u, ICR, 0x7ff);
        w(&mut u, IFLS, 0x12);
        w(&mut u, IBRD, 13);
        w(&mut u, FBRD, 1);
        w(&mut u, LCR_H, 0x70);
        w(&mut u, CR, CR_UARTEN | CR_TXE | CR_RXE);
        w(&mut u, IMSC, INT_RX | INT_RT);
        u
    }

    #[test]
    fn reset_values() {
        let mut u = Pl011::new(Vec::new());
        assert_eq!(r(&mut u, FR), FR_TXFE | FR_RXFE);
        assert_eq!(r(&mut u, CR), 0x300);
        assert_eq!(r(&mut u, IFLS), 0x12);
        assert_eq!(r(&mut u, IMSC), 0);
        assert_eq!(r(&mut u, RIS), 0);
        assert_eq!(r(&mut u, MIS), 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn id_registers_identify_an_arm_pl011() {
        let mut u = Pl011::new(Vec::new());
        let ids: Vec<u32> = (0..8).map(|i| r(&mut u, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // The AMBA bus assembles the periphid from the low bytes: part 0x011, designer 0x41.
        let pid = ids[..4]
            .iter()
            .enumerate()
            .fold(0, |a, (i, b)| a | (b & 0xff) << (8 * i));
        assert_eq!(pid & 0xfff, 0x011);
        assert_eq!((pid >> 12) & 0xff, 0x41);
        w(&mut u, 0xfe0, 0);
        assert_eq!(r(&mut u, 0xfe0), 0x11, "read-only");
    }

    #[test]
    fn stored_registers_read_back_masked() {
        let mut u = Pl011::new(Vec::new());
        for (off, mask) in [
            (IBRD, 0xffff),
            (FBRD, 0x3f),
            (LCR_H, 0xff),
            (CR, 0xff87),
            (IFLS, 0x3f),
            (IMSC, 0x7ff),
            (DMACR, 7),
            (ILPR, 0xff),
        ] {
            w(&mut u, off, 0xffff_ffff);
            assert_eq!(r(&mut u, off), mask, "offset {off:#x}");
            w(&mut u, off, 0);
            assert_eq!(r(&mut u, off), 0, "offset {off:#x}");
        }
        w(&mut u, FR, 0);
        assert_eq!(r(&mut u, FR), FR_TXFE | FR_RXFE, "FR ignores writes");
        assert_eq!(r(&mut u, 0x800), 0, "reserved");
    }

    #[test]
    fn transmit_reaches_the_sink_and_raises_txris() {
        let mut u = linux_started();
        assert_eq!(r(&mut u, RIS) & INT_TX, 0);
        for b in b"hi\n" {
            assert_eq!(
                r(&mut u, FR) & (FR_TXFF | FR_BUSY),
                0,
                "never full, never busy"
            );
            w(&mut u, DR, u32::from(*b) | 0xff00);
        }
        assert_eq!(u.output().as_slice(), b"hi\n");
        assert_ne!(r(&mut u, RIS) & INT_TX, 0);
        assert!(!u.irq_level(), "TXIM masked");
        // Linux's start_tx: write the FIFO first, then unmask TXIM, and expect the interrupt.
        w(&mut u, IMSC, INT_RX | INT_RT | INT_TX);
        assert!(u.irq_level());
        assert_eq!(r(&mut u, MIS), INT_TX);
        // Nothing more to send: stop_tx masks it again.
        w(&mut u, IMSC, INT_RX | INT_RT);
        assert!(!u.irq_level());
        w(&mut u, ICR, INT_TX);
        assert_eq!(r(&mut u, RIS) & INT_TX, 0, "ICR clears TXRIS");
    }

    #[test]
    fn sixteen_bit_accesses_work_as_linux_uses_them() {
        let mut u = linux_started();
        u.write(0, DR, H, u64::from(b'x')).unwrap();
        assert_eq!(u.output().as_slice(), b"x");
        u.push_rx(b'y');
        assert_eq!(u.read(0, FR, H).unwrap() as u32 & FR_RXFE, 0);
        assert_eq!(u.read(0, DR, H).unwrap(), u64::from(b'y'));
        u.write(0, DR, AccessSize::Byte, u64::from(b'z')).unwrap();
        assert_eq!(u.output().as_slice(), b"xz");
    }

    #[test]
    fn receive_path_and_timeout_interrupt() {
        let mut u = linux_started();
        assert!(u.push_rx(b'a'));
        assert_eq!(r(&mut u, FR) & FR_RXFE, 0);
        assert_eq!(
            r(&mut u, MIS),
            INT_RT,
            "one byte: below the trigger, the timeout fires"
        );
        assert!(u.irq_level());
        assert_eq!(r(&mut u, DR), u32::from(b'a'));
        assert_ne!(r(&mut u, FR) & FR_RXFE, 0);
        assert!(!u.irq_level(), "reading the FIFO empty clears RTRIS");
        assert_eq!(r(&mut u, DR), 0, "empty FIFO reads 0");
    }

    #[test]
    fn rx_trigger_level_follows_ifls() {
        let mut u = linux_started(); // RXIFLSEL = 2: half of 32
        for i in 0..15 {
            u.push_rx(i);
        }
        assert_eq!(r(&mut u, RIS) & INT_RX, 0);
        u.push_rx(15);
        assert_ne!(r(&mut u, RIS) & INT_RX, 0, "16 bytes reach the 1/2 trigger");
        w(&mut u, IFLS, 4 << 3); // 7/8
        assert_eq!(r(&mut u, RIS) & INT_RX, 0);
        for i in 0..16 {
            assert_eq!(r(&mut u, DR), i, "FIFO order");
        }
    }

    #[test]
    fn icr_clears_receive_interrupts_until_more_data_arrives() {
        let mut u = linux_started();
        u.push_rx(1);
        w(&mut u, ICR, INT_RT | INT_RX);
        assert!(!u.irq_level());
        u.push_rx(2);
        assert!(u.irq_level(), "a new byte raises it again");
    }

    #[test]
    fn overrun_when_full_and_fifo_disable() {
        let mut u = linux_started();
        for i in 0..32 {
            assert!(u.push_rx(i));
        }
        assert_ne!(r(&mut u, FR) & FR_RXFF, 0);
        assert_eq!(u.rx_space(), 0);
        assert!(!u.push_rx(99));
        assert_ne!(r(&mut u, RSR_ECR) & RSR_OE, 0);
        assert_ne!(r(&mut u, RIS) & INT_OE, 0);
        w(&mut u, RSR_ECR, 0);
        w(&mut u, ICR, INT_OE);
        assert_eq!(r(&mut u, RSR_ECR), 0);
        assert_eq!(r(&mut u, RIS) & INT_OE, 0);
        for i in 0..32 {
            assert_eq!(r(&mut u, DR), i);
        }
        // FIFOs off: a single holding register.
        w(&mut u, LCR_H, 0x60);
        assert!(u.push_rx(7));
        assert_ne!(r(&mut u, FR) & FR_RXFF, 0);
        assert_ne!(
            r(&mut u, RIS) & INT_RX,
            0,
            "one byte is the trigger without FIFOs"
        );
        assert!(!u.push_rx(8));
    }

    #[test]
    fn receiver_disabled_drops_input() {
        let mut u = Pl011::new(Vec::new()); // UARTEN clear out of reset
        assert!(!u.push_rx(1));
        assert_ne!(r(&mut u, FR) & FR_RXFE, 0);
    }

    #[test]
    fn loopback_returns_transmitted_bytes() {
        let mut u = linux_started();
        w(&mut u, CR, CR_UARTEN | CR_TXE | CR_RXE | CR_LBE);
        w(&mut u, DR, 0x42);
        assert!(u.output().is_empty());
        assert_eq!(r(&mut u, DR), 0x42);
    }

    #[test]
    fn access_errors() {
        let mut u = Pl011::new(Vec::new());
        assert_eq!(
            u.read(0, 0x18, AccessSize::Double),
            Err(MmioError::BadWidth {
                offset: 0x18,
                size: AccessSize::Double
            })
        );
        assert_eq!(
            u.read(0, 0x19, AccessSize::Byte),
            Err(MmioError::BadWidth {
                offset: 0x19,
                size: AccessSize::Byte
            })
        );
        assert_eq!(
            u.write(0, 0x2, W, 0),
            Err(MmioError::Unaligned { offset: 2, size: W })
        );
        assert_eq!(
            u.read(0, 0x1000, W),
            Err(MmioError::OutOfWindow {
                offset: 0x1000,
                size: W
            })
        );
    }

    proptest! {
        #[test]
        fn random_accesses_never_panic(
            ops in prop::collection::vec((0u64..0x1008, 0usize..4, prop::option::of(any::<u64>()), any::<u8>()), 1..200)
        ) {
            let mut u = Pl011::new(Vec::new());
            for (off, size, write, rx) in ops {
                let size = AccessSize::ALL[size];
                match write {
                    Some(v) => { let _ = u.write(0, off, size, v); }
                    None => if let Ok(v) = u.read(0, off, size) {
                        prop_assert_eq!(v & !size.mask(), 0);
                    }
                }
                u.push_rx(rx);
                prop_assert!(u.rx_len <= RX_FIFO_DEPTH);
                prop_assert_eq!(u.irq_level(), u.mis() != 0);
            }
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    type Uart = Pl011<Vec<u8>>;

    fn w(u: &mut Uart, off: u64, v: u32) {
        u.write(0, off, AccessSize::Word, u64::from(v)).unwrap()
    }

    fn r(u: &mut Uart, off: u64) -> u32 {
        u.read(0, off, AccessSize::Word).unwrap() as u32
    }

    /// A UART mid-conversation: FIFOs on, the receive FIFO wrapped around its ring, TXRIS
    /// latched, an overrun recorded, RT acknowledged.
    fn busy() -> Uart {
        let mut u = Pl011::new(Vec::new());
        w(&mut u, IBRD, 13);
        w(&mut u, FBRD, 1);
        w(&mut u, LCR_H, 0x70);
        w(&mut u, CR, CR_UARTEN | CR_TXE | CR_RXE);
        w(&mut u, IMSC, INT_RX | INT_RT | INT_TX);
        for b in 0..20 {
            assert!(u.push_rx(b));
        }
        for _ in 0..15 {
            r(&mut u, DR);
        }
        for b in 100..127 {
            assert!(u.push_rx(b));
        }
        assert!(!u.push_rx(0xee), "full: overrun");
        w(&mut u, DR, u32::from(b'x'));
        w(&mut u, ICR, INT_RT);
        u
    }

    /// Everything the guest can observe, draining the receive FIFO.
    fn observe(u: &mut Uart) -> Vec<u32> {
        let mut v: Vec<u32> = [
            FR, RIS, MIS, RSR_ECR, IBRD, FBRD, LCR_H, CR, IFLS, IMSC, DMACR, ILPR,
        ]
        .iter()
        .map(|&off| r(u, off))
        .collect();
        v.push(u32::from(u.irq_level()));
        while r(u, FR) & FR_RXFE == 0 {
            v.push(r(u, DR));
        }
        v.push(u.rx_space() as u32);
        v
    }

    #[test]
    fn busy_uart_round_trips() {
        let mut u = busy();
        let bytes = u.save_state();
        assert_eq!(bytes.len(), PL011_STATE_LEN);
        let mut v = Pl011::load_state(Vec::new(), &bytes).unwrap();
        assert_eq!(v.save_state(), bytes, "the ring is saved oldest first");
        assert!(v.output().is_empty(), "the sink is the caller's");
        let (a, b) = (observe(&mut u), observe(&mut v));
        assert_eq!(a, b);
        assert!(a.len() > 40, "the FIFO held 32 bytes");
        let fresh = Pl011::new(Vec::new());
        let mut f = Pl011::load_state(Vec::new(), &fresh.save_state()).unwrap();
        assert_eq!(observe(&mut f), observe(&mut Pl011::new(Vec::new())));
    }

    #[test]
    fn bytes_beyond_a_disabled_fifo_survive() {
        let mut u = busy();
        w(&mut u, LCR_H, 0x60); // FIFOs off with 32 bytes queued
        let mut v = Pl011::load_state(Vec::new(), &u.save_state()).unwrap();
        assert_eq!(observe(&mut u), observe(&mut v));
    }

    #[test]
    fn bad_states_are_refused() {
        let good = busy().save_state();
        let bad = |edit: &dyn Fn(&mut [u8; PL011_STATE_LEN])| {
            let mut b = good;
            edit(&mut b);
            Pl011::load_state(Vec::new(), &b).unwrap_err()
        };
        assert_eq!(
            Pl011::load_state(Vec::new(), &good[..87]).unwrap_err(),
            Pl011StateError::Length {
                len: 87,
                expected: 88
            }
        );
        assert_eq!(bad(&|b| b[1] = 0), Pl011StateError::BadMagic);
        let e = bad(&|b| b[4] = 7);
        assert_eq!(
            e,
            Pl011StateError::Version {
                found: 7,
                supported: 1
            }
        );
        assert!(e.to_string().contains("version 7"));
        assert!(matches!(
            bad(&|b| b[8] = 33),
            Pl011StateError::Field { offset: 8, .. }
        ));
        let mut empty = Pl011::new(Vec::new()).save_state();
        empty[20] = 1;
        assert!(matches!(
            Pl011::load_state(Vec::new(), &empty),
            Err(Pl011StateError::Field { offset: 20, .. })
        ));
        let cr = STATE_REGS_AT + 4 * 7;
        assert_eq!(
            bad(&|b| b[cr] |= 0x08),
            Pl011StateError::Field {
                offset: cr,
                field: "CR",
                value: 0x0308 | 1
            }
        );
        assert!(matches!(
            bad(&|b| b[STATE_REGS_AT] |= 1),
            Pl011StateError::Field { .. }
        ));
    }

    #[test]
    fn every_byte_change_is_refused_or_reloads_identically() {
        let good = busy().save_state();
        let mut b = good;
        for at in 0..good.len() {
            for x in [0x01u8, 0x10, 0xff] {
                b[at] ^= x;
                if let Ok(u) = Pl011::load_state(Vec::new(), &b) {
                    assert_eq!(u.save_state(), b);
                    assert!(u.rx_len <= RX_FIFO_DEPTH);
                }
                b[at] ^= x;
            }
        }
    }
}
