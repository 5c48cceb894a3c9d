//! What the hardware table walker does, written independently of `stage2::walker` so the sim
//! checks the tables, not the code that built them.

use crate::mm::addr::{Ipa, Pa};
use crate::mm::descriptor::{Entry, LeafAttrs, Level};
use crate::mm::stage2::Stage2Config;

use super::memory::SimMemory;

/// Deepest walk: a root plus three more levels.
pub const MAX_PATH: usize = 4;

/// A successful walk: the leaf and the tables read on the way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WalkHit {
    /// First IPA the leaf maps.
    pub ipa: Ipa,
    pub pa: Pa,
    pub level: Level,
    pub attrs: LeafAttrs,
    /// Table frames read (entry addresses rounded down to their frame), root first.
    pub path: [Pa; MAX_PATH],
    pub path_len: usize,
}

/// Walk `ipa` in the tree at `root`; `Err(level)` is a translation fault at `level`.
pub fn hw_walk(mem: &SimMemory, cfg: &Stage2Config, root: Pa, ipa: Ipa) -> Result<WalkHit, Level> {
    hw_walk_with(&mut |pa| mem.read_u64(pa), cfg, root, ipa)
}

/// [`hw_walk`] reading each entry through `read` (the value a walker on some CPU sees at that
/// address, which under weak ordering need not be the latest store).
pub fn hw_walk_with(
    read: &mut dyn FnMut(Pa) -> u64,
    cfg: &Stage2Config,
    root: Pa,
    ipa: Ipa,
) -> Result<WalkHit, Level> {
    let mut level = cfg.start_level();
    if ipa.raw() >= cfg.ipa_limit() {
        return Err(level);
    }
    let mut table = root;
    let mut path = [Pa::new(0); MAX_PATH];
    let mut path_len = 0;
    // The root index is not masked to 9 bits: concatenated tables extend it.
    let mut index = (ipa.raw() >> level.shift()) as usize;
    loop {
        let entry_pa = Pa::new(table.raw() + 8 * index as u64);
        path[path_len] = entry_pa.align_down(crate::mm::addr::PAGE_SIZE);
        path_len += 1;
        let pte = crate::mm::descriptor::Pte::from_raw(read(entry_pa));
        match pte.decode(level) {
            Entry::Invalid(_) => return Err(level),
            Entry::Leaf { pa, attrs } => {
                let base = ipa.align_down(level.entry_size());
                return Ok(WalkHit {
                    ipa: base,
                    pa,
                    level,
                    attrs,
                    path,
                    path_len,
                });
            }
            Entry::Table(next) => {
                level = level.next().expect("no tables at level 3");
                table = next;
                index = level.index(ipa);
            }
        }
    }
}
