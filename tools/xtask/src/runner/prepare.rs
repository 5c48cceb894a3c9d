//! What the QEMU tests boot, made once before any of them runs: each guest (Debian's kernel
//! with an initramfs recipe, a bare-metal test guest) and each hypervisor build. One that
//! cannot be made is reported once and fails only the tests that need it.

use crate::build::{self, HypImage, Variant};
use crate::guest_images::{self, Images};
use crate::spec::{GuestKind, Spec};
use crate::workspace::Workspace;
use std::collections::BTreeMap;

/// Each guest and hypervisor build the tests need, or why it could not be made.
pub(super) struct Prepared {
    images: BTreeMap<Variant, Result<HypImage, String>>,
    guests: BTreeMap<GuestKind, Result<Images, String>>,
}

impl Prepared {
    /// The guests first, then the hypervisor builds, each announced as it starts.
    pub(super) fn build(ws: &Workspace, specs: &[Spec], release: bool) -> Self {
        let guests = guests(ws, specs);
        let images = images(ws, specs, release);
        Self { images, guests }
    }

    /// What `spec` boots: the hypervisor (none for a guest run natively) and the guest's
    /// images; else why it cannot run, the hypervisor's failure first.
    pub(super) fn for_spec(
        &self,
        spec: &Spec,
    ) -> Result<(Option<&HypImage>, Option<&Images>), &String> {
        let image = match spec.guest.as_ref() {
            Some(g) if g.native => Ok(None),
            _ => self.images[&spec.variant].as_ref().map(Some),
        };
        let guest = spec
            .guest
            .as_ref()
            .map(|g| self.guests[&g.kind].as_ref())
            .transpose();
        image.and_then(|i| guest.map(|g| (i, g)))
    }
}

fn guests(ws: &Workspace, specs: &[Spec]) -> BTreeMap<GuestKind, Result<Images, String>> {
    let mut guests: BTreeMap<GuestKind, Result<Images, String>> = BTreeMap::new();
    for guest in specs.iter().filter_map(|s| s.guest.as_ref()) {
        if guests.contains_key(&guest.kind) {
            continue;
        }
        let built = match &guest.kind {
            GuestKind::Linux { kernel, initramfs } => {
                println!("== preparing guest linux (kernel {kernel}, initramfs {initramfs})");
                guest_images::linux(ws, *kernel, initramfs)
            }
            GuestKind::BareMetal(name) => {
                println!("== building test guest {name}");
                guest_images::bare_metal(ws, name)
            }
        };
        let built = built.map_err(|e| {
            println!("error: {e:#}");
            "the guest could not be prepared; see the error above".to_string()
        });
        guests.insert(guest.kind.clone(), built);
    }
    guests
}

fn images(
    ws: &Workspace,
    specs: &[Spec],
    release: bool,
) -> BTreeMap<Variant, Result<HypImage, String>> {
    let mut images: BTreeMap<Variant, Result<HypImage, String>> = BTreeMap::new();
    for spec in specs {
        if images.contains_key(&spec.variant) || spec.guest.as_ref().is_some_and(|g| g.native) {
            continue;
        }
        println!("== building hyp ({})", spec.variant);
        let built = build::build_hyp(ws, &spec.variant, release).map_err(|e| {
            println!("error: {e:#}");
            format!(
                "the hyp build ({}) failed; see its output above",
                spec.variant
            )
        });
        images.insert(spec.variant.clone(), built);
    }
    images
}
