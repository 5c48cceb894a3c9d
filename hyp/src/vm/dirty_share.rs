//! One dirty log shared by several users (a monitor harvesting periodically, snapshot tracking
//! saving what a diff needs): every user sees every page written since its own last harvest.
//!
//! The memory core keeps one log with one harvest, and a page's bit goes to whoever harvests
//! first. Here each harvest hands its pages to the caller and ORs them into every other
//! user's pending set, so rule 4 (a page written after a harvest is in the next one) holds
//! for each user, not only for the log. The log is on while anybody uses it. The caller
//! supplies the log's operations, so this runs in host tests.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// Users, numbered `0..N`.
#[derive(Debug)]
pub struct DirtyShare<const N: usize> {
    /// Per user: pages harvested for others since this user's last harvest; `None` when not
    /// a user.
    pending: [Option<Vec<u64>>; N],
    /// Bitmap length in 64-bit words.
    words: usize,
}

impl<const N: usize> DirtyShare<N> {
    /// Nobody uses the log of `words` bitmap words.
    pub fn new(words: usize) -> Self {
        Self {
            pending: [const { None }; N],
            words,
        }
    }

    pub fn is_user(&self, user: usize) -> bool {
        self.pending[user].is_some()
    }

    pub fn any_user(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// Makes `user` a user, calling `enable` first if nobody was. `Ok(false)`: it already was.
    ///
    /// # Errors
    /// `enable`'s; then nothing changed.
    pub fn join<E>(
        &mut self,
        user: usize,
        enable: impl FnOnce() -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.is_user(user) {
            return Ok(false);
        }
        if !self.any_user() {
            enable()?;
        }
        self.pending[user] = Some(alloc::vec![0; self.words]);
        Ok(true)
    }

    /// Ends `user`'s use, calling `disable` if nobody else uses the log. `Ok(false)`: it was no
    /// user.
    ///
    /// # Errors
    /// `disable`'s; `user` has left all the same (its pending pages are gone).
    pub fn leave<E>(
        &mut self,
        user: usize,
        disable: impl FnOnce() -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.pending[user].take().is_none() {
            return Ok(false);
        }
        if !self.any_user() {
            disable()?;
        }
        Ok(true)
    }

    /// ORs into `out` every page written since `user`'s last harvest and returns how many
    /// that is. `harvest` is the log's own: it ORs the pages written since the log's last
    /// harvest (by anyone) into a zeroed bitmap. `Ok(None)`: `user` is no user.
    ///
    /// # Errors
    /// `harvest`'s; then no user lost a page that the log had handed out.
    pub fn harvest<E>(
        &mut self,
        user: usize,
        out: &mut [u64],
        harvest: impl FnOnce(&mut [u64]) -> Result<u64, E>,
    ) -> Result<Option<u64>, E> {
        if !self.is_user(user) {
            return Ok(None);
        }
        let mut fresh = alloc::vec![0u64; self.words];
        // On an error the log may have handed out some pages already: keep them for everyone.
        let result = harvest(&mut fresh);
        let mut count = 0;
        for (k, p) in self.pending.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            for (q, f) in p.iter_mut().zip(&fresh) {
                *q |= f;
            }
            if k == user && result.is_ok() {
                for (o, mine) in out.iter_mut().zip(p.iter_mut()) {
                    count += u64::from(mine.count_ones());
                    *o |= *mine;
                    *mine = 0;
                }
            }
        }
        result.map(|_| Some(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;

    /// A log of 128 pages: `written` are the pages written since its last harvest.
    struct Log {
        on: bool,
        written: [u64; 2],
    }

    impl Log {
        fn write(&mut self, page: usize) {
            if self.on {
                self.written[page / 64] |= 1 << (page % 64);
            }
        }
        fn harvest(&mut self, out: &mut [u64]) -> Result<u64, Infallible> {
            let mut n = 0;
            for (o, w) in out.iter_mut().zip(&mut self.written) {
                n += u64::from(w.count_ones());
                *o |= core::mem::take(w);
            }
            Ok(n)
        }
    }

    fn pages(bits: &[u64]) -> Vec<usize> {
        (0..bits.len() * 64)
            .filter(|&i| bits[i / 64] & (1 << (i % 64)) != 0)
            .collect()
    }

    fn take(s: &mut DirtyShare<2>, log: &mut Log, user: usize) -> Vec<usize> {
        let mut out = [0u64; 2];
        let n = s.harvest(user, &mut out, |b| log.harvest(b)).unwrap();
        assert_eq!(n, Some(pages(&out).len() as u64));
        pages(&out)
    }

    #[test]
    fn each_user_sees_every_page_written_since_its_own_last_harvest() {
        let mut log = Log {
            on: false,
            written: [0; 2],
        };
        let mut s = DirtyShare::<2>::new(2);
        let on = |log: &mut Log| {
            log.on = true;
            Ok::<(), Infallible>(())
        };
        assert_eq!(s.join(0, || on(&mut log)), Ok(true));
        log.write(1);
        assert_eq!(
            s.join(1, || -> Result<(), Infallible> { panic!("already on") }),
            Ok(true)
        );
        log.write(70);
        assert_eq!(take(&mut s, &mut log, 0), [1, 70]);
        log.write(3);
        // 70 went to user 0's harvest but is user 1's too. Page 1 was written before user 1
        // joined, but the log cannot tell: a user may see more than it needs, never less.
        assert_eq!(take(&mut s, &mut log, 1), [1, 3, 70]);
        assert_eq!(take(&mut s, &mut log, 0), [3]);
        assert_eq!(take(&mut s, &mut log, 0), Vec::<usize>::new());
        log.write(127);
        assert_eq!(take(&mut s, &mut log, 0), [127]);
        assert_eq!(take(&mut s, &mut log, 1), [127]);
        assert_eq!(s.join(1, || on(&mut log)), Ok(false));
    }

    #[test]
    fn the_log_is_on_while_anybody_uses_it() {
        let mut s = DirtyShare::<2>::new(2);
        let (mut enables, mut disables) = (0, 0);
        let count = |n: &mut i32| {
            *n += 1;
            Ok::<(), Infallible>(())
        };
        s.join(0, || count(&mut enables)).unwrap();
        s.join(1, || count(&mut enables)).unwrap();
        assert_eq!(s.leave(0, || count(&mut disables)), Ok(true));
        assert_eq!(disables, 0, "user 1 still logs");
        assert_eq!(s.leave(0, || count(&mut disables)), Ok(false));
        assert_eq!(s.leave(1, || count(&mut disables)), Ok(true));
        assert_eq!((enables, disables), (1, 1));
        assert!(!s.any_user());
        let mut out = [0u64; 2];
        let h = s.harvest(0, &mut out, |_| -> Result<u64, Infallible> {
            panic!("off")
        });
        assert_eq!(h, Ok(None));
    }

    #[test]
    fn a_failed_enable_or_harvest_loses_nothing() {
        let mut s = DirtyShare::<2>::new(2);
        assert_eq!(s.join(0, || Err("no memory")), Err("no memory"));
        assert!(!s.any_user());
        s.join(0, || Ok::<(), &str>(())).unwrap();
        s.join(1, || Ok::<(), &str>(())).unwrap();
        let mut out = [0u64; 2];
        // The log handed out page 5, then failed: both users still get it.
        let r = s.harvest(0, &mut out, |b| {
            b[0] |= 1 << 5;
            Err("out of memory")
        });
        assert_eq!(r, Err("out of memory"));
        assert_eq!(out, [0, 0]);
        for user in [0, 1] {
            let mut out = [0u64; 2];
            assert_eq!(
                s.harvest(user, &mut out, |_| Ok::<u64, &str>(0)),
                Ok(Some(1))
            );
            assert_eq!(pages(&out), [5]);
        }
    }
}
