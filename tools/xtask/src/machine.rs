//! One QEMU run of the `virt` machine as its command line: the CPU, RAM, the image it boots
//! and the files it loads, kept as data so a test, a benchmark and `cargo xtask qemu` describe
//! their runs the same way and the arguments are built in one place. Nothing here runs QEMU.

use crate::size::Size;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Machine options every run gets unless it overrides them: EL2 exists (otherwise the firmware
/// enters at EL1 and the hypervisor refuses to run) and the GIC is v3 (the vGIC emulates v3).
pub const DEFAULT_MACHINE: &[(&str, &str)] = &[("virtualization", "on"), ("gic-version", "3")];

/// `-cpu`: every feature TCG has; `pauth-impdef` makes pointer authentication cheap (the QARMA
/// default dominates run time otherwise).
const CPU: &str = "max,pauth-impdef=on";

/// One QEMU run of the hypervisor image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub kernel: PathBuf,
    pub smp: u32,
    pub mem: Size,
    /// `key=value` options overriding or extending [`DEFAULT_MACHINE`].
    pub machine_options: Vec<(String, String)>,
    pub icount: bool,
    pub gdb: bool,
    /// `-initrd`: only for a guest run natively; under the hypervisor images go in `loaders`.
    pub initrd: Option<PathBuf>,
    /// `-append`: the kernel command line, likewise only for a native guest.
    pub append: Option<String>,
    /// `-dtb`: the boot device tree, describing the hypervisor's guests.
    pub dtb: Option<PathBuf>,
    /// The hypervisor's own command line, its boot DTB's `/chosen/bootargs`: written into `dtb`
    /// by [`crate::guest::Guest::add_to`], or without a `dtb` given to QEMU as `-append`, which QEMU puts
    /// there in the tree it makes.
    pub hyp_args: String,
    /// Files QEMU copies into RAM at an address before the first instruction.
    pub loaders: Vec<(PathBuf, u64)>,
    pub extra: Vec<String>,
}

impl Machine {
    pub fn new(kernel: PathBuf) -> Self {
        Self {
            kernel,
            smp: 1,
            mem: Size::from_mib(1024),
            machine_options: Vec::new(),
            icount: false,
            gdb: false,
            initrd: None,
            append: None,
            dtb: None,
            hyp_args: String::new(),
            loaders: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The `-M` value: `virt` with the defaults, each overridden by a same-named option.
    pub fn machine_arg(&self) -> String {
        let mut options: Vec<(String, String)> = DEFAULT_MACHINE
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (key, value) in &self.machine_options {
            match options.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => options.push((key.clone(), value.clone())),
            }
        }
        let mut arg = String::from("virt");
        for (key, value) in options {
            arg.push_str(&format!(",{key}={value}"));
        }
        arg
    }

    /// QEMU's arguments. `-semihosting` is how the hypervisor reports a failure as QEMU's exit
    /// status; `-nographic` puts the console and QEMU's monitor on stdio (Ctrl-A X quits).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "-M".to_string(),
            self.machine_arg(),
            "-cpu".into(),
            CPU.into(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.mem.qemu_arg(),
            "-nographic".into(),
            "-semihosting".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push("-kernel".into());
        args.push(self.kernel.clone().into());
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.clone().into()]);
        }
        let hyp_append = Some(&self.hyp_args).filter(|a| self.dtb.is_none() && !a.is_empty());
        if let Some(append) = self.append.as_ref().or(hyp_append) {
            args.extend(["-append".into(), append.into()]);
        }
        if let Some(dtb) = &self.dtb {
            args.extend(["-dtb".into(), dtb.clone().into()]);
        }
        for (file, addr) in &self.loaders {
            // QEMU option values escape a comma by doubling it.
            let file = file.to_string_lossy().replace(',', ",,");
            args.push("-device".into());
            args.push(format!("loader,file={file},addr={addr:#x},force-raw=on").into());
        }
        if self.icount {
            args.extend(["-icount".into(), "shift=4,sleep=off".into()]);
        }
        if self.gdb {
            args.extend(["-s".into(), "-S".into()]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        args
    }

    /// The arguments that make QEMU write this machine's device tree to `out` and exit: the
    /// same `-M`, CPU, CPU count and RAM, since the tree describes all of them.
    pub fn dump_dtb_args(&self, out: &Path) -> Vec<OsString> {
        let machine = format!(
            "{},dumpdtb={}",
            self.machine_arg(),
            out.to_string_lossy().replace(',', ",,")
        );
        [
            "-M",
            &machine,
            "-cpu",
            CPU,
            "-smp",
            &self.smp.to_string(),
            "-m",
            &self.mem.qemu_arg(),
            "-nographic",
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }
}

/// The command line as a shell would take it, for logs and for copying.
pub fn command_line(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| {
            let a = a.to_string_lossy();
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
            {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn the_default_machine_has_el2_and_gicv3() {
        let m = Machine::new("hyp.bin".into());
        assert_eq!(
            strings(m.args()),
            [
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-cpu",
                "max,pauth-impdef=on",
                "-smp",
                "1",
                "-m",
                "1024M",
                "-nographic",
                "-semihosting",
                "-kernel",
                "hyp.bin"
            ]
        );
    }

    #[test]
    fn machine_options_override_defaults_in_place_and_extend_them() {
        let m = Machine {
            machine_options: vec![
                ("virtualization".into(), "off".into()),
                ("highmem".into(), "off".into()),
            ],
            ..Machine::new("hyp.bin".into())
        };
        assert_eq!(
            m.machine_arg(),
            "virt,virtualization=off,gic-version=3,highmem=off"
        );
    }

    #[test]
    fn icount_gdb_and_extra_arguments_come_after_the_kernel() {
        let m = Machine {
            smp: 4,
            mem: size::parse("4G").unwrap(),
            icount: true,
            gdb: true,
            extra: vec!["-d".into(), "guest_errors".into()],
            ..Machine::new("hyp.bin".into())
        };
        let args = strings(m.args());
        let tail = &args[args.iter().position(|a| a == "hyp.bin").unwrap() + 1..];
        assert_eq!(
            tail,
            [
                "-icount",
                "shift=4,sleep=off",
                "-s",
                "-S",
                "-d",
                "guest_errors"
            ]
        );
        assert!(args.windows(2).any(|w| w == ["-smp", "4"]));
        assert!(args.windows(2).any(|w| w == ["-m", "4096M"]));
    }

    #[test]
    fn guests_add_a_dtb_and_loaders_and_native_runs_an_initrd() {
        let m = Machine {
            dtb: Some("boot.dtb".into()),
            loaders: vec![
                ("Image".into(), 0x7e00_0000),
                ("a,b.cpio".into(), 0x7de0_0000),
            ],
            ..Machine::new("hyp.bin".into())
        };
        let args = strings(m.args());
        let tail = &args[args.iter().position(|a| a == "hyp.bin").unwrap() + 1..];
        assert_eq!(
            tail,
            [
                "-dtb",
                "boot.dtb",
                "-device",
                "loader,file=Image,addr=0x7e000000,force-raw=on",
                "-device",
                "loader,file=a,,b.cpio,addr=0x7de00000,force-raw=on"
            ]
        );
        let native = Machine {
            initrd: Some("initrd".into()),
            append: Some("console=ttyAMA0 quiet".into()),
            ..Machine::new("Image".into())
        };
        let args = strings(native.args());
        let tail = &args[args.iter().position(|a| a == "Image").unwrap() + 1..];
        assert_eq!(
            tail,
            ["-initrd", "initrd", "-append", "console=ttyAMA0 quiet"]
        );
    }

    #[test]
    fn hypervisor_bootargs_without_a_boot_dtb_go_to_qemus_tree() {
        let alone = Machine {
            hyp_args: "hyp.log=debug".into(),
            ..Machine::new("hyp.bin".into())
        };
        let args = strings(alone.args());
        assert!(args.windows(2).any(|w| w == ["-append", "hyp.log=debug"]));
        // With our own DTB, Guest::add_to has written them there; QEMU must not add them.
        let with_dtb = Machine {
            dtb: Some("boot.dtb".into()),
            ..alone
        };
        assert!(!strings(with_dtb.args()).contains(&"-append".to_string()));
    }

    #[test]
    fn the_dtb_dump_describes_the_same_machine() {
        let m = Machine {
            smp: 2,
            machine_options: vec![("dtb-randomness".into(), "off".into())],
            ..Machine::new("hyp.bin".into())
        };
        assert_eq!(
            strings(m.dump_dtb_args(Path::new("/t/x.dtb"))),
            [
                "-M",
                "virt,virtualization=on,gic-version=3,dtb-randomness=off,dumpdtb=/t/x.dtb",
                "-cpu",
                "max,pauth-impdef=on",
                "-smp",
                "2",
                "-m",
                "1024M",
                "-nographic"
            ]
        );
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = command_line(
            Path::new("qemu"),
            &["-M".into(), "virt,x=on".into(), "a b".into(), "it's".into()],
        );
        assert_eq!(line, r"qemu -M virt,x=on 'a b' 'it'\''s'");
    }
}
