//! When to read the state file: the watcher's debounce rules, as a pure state machine.
//!
//! [`Debouncer`] is a function of the saves seen, the reads done and the clock (`now` is
//! always an argument), and does no I/O: `watch.rs` feeds it notify's events and what each
//! read found, sleeps until [`Debouncer::read_at`], and reads the file. The rules, as the
//! README states them ("How saves are picked up"), each with a test below:
//!
//! - A save known to be complete (a rename into place, a close after writing, a new
//!   symlink) is read at once.
//! - A write still in progress (data written, no close yet) is read only once its writer
//!   closes the file, where the platform reports closes (Linux: inotify's `IN_CLOSE_WRITE`),
//!   however long the writer pauses. Where it does not, it is read once the writer has been
//!   quiet for `quiet`, or at most `max_wait` after it began.
//! - A change of attributes alone (`chmod`, `touch`) is read after `quiet`, unless a write
//!   is in progress (then its close is awaited).
//! - In a burst of complete saves, the first is read at once and the rest at most once per
//!   `burst`, at the end of the interval (so the last save wins).
//! - A second event for the file already read (a rename is reported twice) schedules nothing.
//! - An empty file is taken for a save caught between its truncate and its write: it is read
//!   again after `quiet` until `max_wait`, then taken as it is.
//! - A removal schedules nothing: the last good state stays, and the recreation is seen.
//!
//! Content identical to the last one read is ignored too, but that is the reader's part
//! (`watch.rs` compares hashes): here a read is only an instant and what it found.

use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};

/// How long to wait for a write in progress.
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// Quiet period after the last write event before a file still open is read anyway.
    pub quiet: Duration,
    /// Longest time a write in progress can delay reading the file.
    pub max_wait: Duration,
    /// Complete saves closer together than this are read once, at the end of the
    /// interval (the first of a burst is read at once), so a burst of saves reaches
    /// proxies as a few versions.
    pub burst: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(100),
            max_wait: Duration::from_millis(1000),
            burst: Duration::from_millis(10),
        }
    }
}

/// Whether an event says a save is complete (read now) or still under way (wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    Complete,
    InProgress,
    /// Permissions, owner or times changed: maybe the file cannot be read any more.
    Attributes,
    Irrelevant,
}

/// Whether the platform reports a writer closing the file (so a write in progress can wait
/// for it instead of guessing from a quiet period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closes {
    Reported,
    NotReported,
}

/// What kind of save a notify event for the file (or its ConfigMap machinery) reports.
pub fn classify(kind: &EventKind) -> Save {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Save::Complete,
        EventKind::Modify(ModifyKind::Name(_)) => Save::Complete,
        // A new symlink (ConfigMap) is complete; a new regular file is about to be written.
        EventKind::Create(CreateKind::File) => Save::InProgress,
        EventKind::Create(_) => Save::Complete,
        EventKind::Modify(ModifyKind::Metadata(_)) => Save::Attributes,
        EventKind::Modify(_) => Save::InProgress,
        // A removal keeps the last good state; the recreation will be seen.
        _ => Save::Irrelevant,
    }
}

/// What a read of the file found, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// An empty file: most likely a save caught between its truncate and its write.
    Empty,
    /// Anything else: content, or no file at all.
    Other,
}

/// What to do with what a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Take it as it is (report it if it is new).
    Take,
    /// Ignore it: the rest of the save is still to come, and [`Debouncer::read_at`] says
    /// when to look again.
    WaitForRest,
}

/// The debounce rules' state: when to read the file next, and what that depends on.
#[derive(Debug, Clone)]
pub struct Debouncer {
    config: Debounce,
    closes: Closes,
    /// A writer has written and not closed the file yet (only known where closes are
    /// reported): nothing is read until it closes.
    writer_open: bool,
    /// When to read the file next, if a save has been seen.
    read_at: Option<Instant>,
    /// When the write in progress (data written, not yet closed, or an empty file) began.
    writing_since: Option<Instant>,
    /// When the file was last read: complete saves closer together than `burst` are
    /// coalesced into one read at the end of the interval.
    last_read: Option<Instant>,
}

impl Debouncer {
    /// Nothing seen yet, nothing to read.
    pub fn new(config: Debounce, closes: Closes) -> Self {
        Debouncer {
            config,
            closes,
            writer_open: false,
            read_at: None,
            writing_since: None,
            last_read: None,
        }
    }

    /// The file changed before the watch was in place, so no event will say how: read it
    /// after `quiet`, in case that save is still being written.
    pub fn missed_save(&mut self, now: Instant) {
        self.read_at = Some(now + self.config.quiet);
    }

    /// When the file should be read next, if at all.
    pub fn read_at(&self) -> Option<Instant> {
        self.read_at
    }

    /// Whether the file should be read now.
    pub fn is_due(&self, now: Instant) -> bool {
        self.read_at.is_some_and(|at| at <= now)
    }

    /// A save event for the file. `already_read`: the file is the very one read last (same
    /// inode, size and modification time); only asked of complete saves.
    pub fn saw(&mut self, now: Instant, save: Save, already_read: bool) {
        match save {
            Save::Complete => {
                let idle = self.read_at.is_none() && self.writing_since.is_none();
                if idle && already_read {
                    return;
                }
                self.writing_since = None;
                self.writer_open = false;
                let earliest = self.last_read.map_or(now, |l| l + self.config.burst);
                self.read_at = Some(earliest.max(now));
            }
            Save::InProgress if self.closes == Closes::Reported => {
                // Its close will say when the save is complete: a read before it could
                // take a prefix, however quiet the writer has been.
                self.writer_open = true;
                self.writing_since.get_or_insert(now);
                self.read_at = None;
            }
            Save::InProgress => self.wait_for_writer(now),
            Save::Attributes if self.writer_open => {}
            Save::Attributes => self.wait_for_writer(now),
            Save::Irrelevant => {}
        }
    }

    /// A look at the file (a poll, where events may be missing) found it changed since it
    /// was last read, with no event saying how: read it at once, unless a writer is known
    /// to have it open (its close will say when).
    pub fn changed_unseen(&mut self, now: Instant) {
        if !self.writer_open {
            self.saw(now, Save::Complete, false);
        }
    }

    /// The file was read at `now` and this is what was found.
    pub fn read(&mut self, now: Instant, found: Found) -> Verdict {
        self.read_at = None;
        self.last_read = Some(now);
        let give_up_at = self.writing_since.map(|s| s + self.config.max_wait);
        if found == Found::Empty && give_up_at.is_none_or(|at| now < at) {
            self.wait_for_writer(now);
            return Verdict::WaitForRest;
        }
        self.writing_since = None;
        Verdict::Take
    }

    /// Reads after the writer has been quiet for `quiet`, or `max_wait` after it began.
    fn wait_for_writer(&mut self, now: Instant) {
        let started = *self.writing_since.get_or_insert(now);
        self.read_at = Some((now + self.config.quiet).min(started + self.config.max_wait));
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{DataChange, MetadataKind, RemoveKind, RenameMode};

    use super::*;

    /// A fake clock: `at(t0, 150)` is 150 ms after `t0`.
    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Where closes are not reported: the quiet-period rules.
    fn debouncer() -> Debouncer {
        Debouncer::new(Debounce::default(), Closes::NotReported)
    }

    /// Where they are (Linux).
    fn with_closes() -> Debouncer {
        Debouncer::new(Debounce::default(), Closes::Reported)
    }

    #[test]
    fn the_defaults_are_the_readme_s() {
        let d = Debounce::default();
        assert_eq!(d.quiet, Duration::from_millis(100));
        assert_eq!(d.max_wait, Duration::from_millis(1000));
        assert_eq!(d.burst, Duration::from_millis(10));
    }

    #[test]
    fn a_complete_save_is_read_at_once() {
        let complete = [
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::Other), // a ConfigMap's new `..data` symlink
        ];
        for kind in complete {
            let t0 = Instant::now();
            let mut d = debouncer();
            d.saw(t0, classify(&kind), false);
            assert_eq!(d.read_at(), Some(t0), "{kind:?}");
            assert!(d.is_due(t0));
            assert_eq!(d.read(t0, Found::Other), Verdict::Take);
            assert_eq!(d.read_at(), None, "read once");
        }
    }

    #[test]
    fn a_write_in_progress_is_read_after_the_writer_is_quiet() {
        let in_progress = [
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Create(CreateKind::File), // a new regular file is about to be written
        ];
        for kind in in_progress {
            assert_eq!(classify(&kind), Save::InProgress, "{kind:?}");
        }
        let t0 = Instant::now();
        let mut d = debouncer();
        d.saw(t0, Save::InProgress, false);
        assert_eq!(d.read_at(), Some(at(t0, 100)));
        d.saw(at(t0, 60), Save::InProgress, false);
        assert_eq!(
            d.read_at(),
            Some(at(t0, 160)),
            "each write restarts the quiet period"
        );
        assert!(!d.is_due(at(t0, 159)));
        assert!(d.is_due(at(t0, 160)));
        assert_eq!(d.read(at(t0, 160), Found::Other), Verdict::Take);
        assert_eq!(d.read_at(), None);
    }

    #[test]
    fn a_write_in_progress_is_read_at_most_max_wait_after_it_began() {
        let t0 = Instant::now();
        let mut d = debouncer();
        // A writer that never goes quiet: a write every 50 ms, reads whenever due.
        let mut t = 0;
        while !d.is_due(at(t0, t)) && t < 5000 {
            d.saw(at(t0, t), Save::InProgress, false);
            t += 50;
        }
        assert_eq!(d.read_at(), Some(at(t0, 1000)));
        assert_eq!(t, 1000, "read at max_wait after the first write");
        assert_eq!(d.read(at(t0, t), Found::Other), Verdict::Take);
        // The next write begins a new wait.
        d.saw(at(t0, 1050), Save::InProgress, false);
        assert_eq!(d.read_at(), Some(at(t0, 1150)));
    }

    #[test]
    fn a_close_after_a_write_in_progress_is_read_at_once() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.saw(t0, Save::InProgress, false);
        d.saw(at(t0, 5), Save::Complete, false);
        assert_eq!(d.read_at(), Some(at(t0, 5)));
    }

    #[test]
    fn in_a_burst_the_first_save_is_read_at_once_and_the_rest_once_per_burst_interval() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.saw(t0, Save::Complete, false);
        assert_eq!(d.read_at(), Some(t0), "the first at once");
        assert_eq!(d.read(t0, Found::Other), Verdict::Take);
        d.saw(at(t0, 2), Save::Complete, false);
        assert_eq!(
            d.read_at(),
            Some(at(t0, 10)),
            "the next at the end of the interval"
        );
        d.saw(at(t0, 7), Save::Complete, false);
        assert_eq!(
            d.read_at(),
            Some(at(t0, 10)),
            "one read for both: the last wins"
        );
        assert_eq!(d.read(at(t0, 10), Found::Other), Verdict::Take);
        d.saw(at(t0, 13), Save::Complete, false);
        assert_eq!(d.read_at(), Some(at(t0, 20)));
        assert_eq!(d.read(at(t0, 20), Found::Other), Verdict::Take);
        d.saw(at(t0, 50), Save::Complete, false);
        assert_eq!(
            d.read_at(),
            Some(at(t0, 50)),
            "after the burst, at once again"
        );
    }

    #[test]
    fn a_second_event_for_a_file_already_read_schedules_nothing() {
        let t0 = Instant::now();
        let mut d = debouncer();
        // A rename, reported as `To` and again as `Both` after the read.
        d.saw(t0, Save::Complete, false);
        assert_eq!(d.read(t0, Found::Other), Verdict::Take);
        d.saw(at(t0, 1), Save::Complete, true);
        assert_eq!(d.read_at(), None);
        // A different file (or version) is read, even right after.
        d.saw(at(t0, 2), Save::Complete, false);
        assert_eq!(d.read_at(), Some(at(t0, 10)));
    }

    #[test]
    fn an_event_for_the_file_already_read_still_reads_while_a_save_is_pending() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.saw(t0, Save::Complete, false);
        assert_eq!(d.read(t0, Found::Empty), Verdict::WaitForRest);
        // The writer closes the file without writing (same stamp): look again now.
        d.saw(at(t0, 20), Save::Complete, true);
        assert_eq!(d.read_at(), Some(at(t0, 20)));
    }

    #[test]
    fn an_empty_file_is_read_again_until_max_wait_then_taken_as_is() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.saw(t0, Save::Complete, false);
        let mut reads = vec![];
        let mut now = t0;
        while d.read(now, Found::Empty) == Verdict::WaitForRest && reads.len() < 50 {
            reads.push(now - t0);
            now = d.read_at().expect("an empty file is read again");
        }
        assert_eq!(now, at(t0, 1000), "taken as it is at max_wait");
        let expected: Vec<_> = (0..10).map(|i| Duration::from_millis(i * 100)).collect();
        assert_eq!(reads, expected, "read again every quiet period");
        assert_eq!(d.read_at(), None);
    }

    #[test]
    fn an_empty_file_that_fills_up_is_taken() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.saw(t0, Save::Complete, false);
        assert_eq!(d.read(t0, Found::Empty), Verdict::WaitForRest);
        assert_eq!(d.read(at(t0, 100), Found::Other), Verdict::Take);
        // The wait is over: a later empty file waits its own `max_wait`.
        d.saw(at(t0, 5000), Save::Complete, false);
        assert_eq!(d.read(at(t0, 5000), Found::Empty), Verdict::WaitForRest);
        assert_eq!(d.read_at(), Some(at(t0, 5100)));
    }

    #[test]
    fn a_removal_schedules_nothing() {
        let removal = [
            EventKind::Remove(RemoveKind::File),
            EventKind::Remove(RemoveKind::Any),
        ];
        let t0 = Instant::now();
        let mut d = debouncer();
        for kind in removal {
            assert_eq!(classify(&kind), Save::Irrelevant, "{kind:?}");
            d.saw(t0, classify(&kind), false);
            assert_eq!(d.read_at(), None);
        }
        // Nor does it cancel a read already scheduled.
        d.saw(t0, Save::InProgress, false);
        d.saw(at(t0, 10), Save::Irrelevant, false);
        assert_eq!(d.read_at(), Some(at(t0, 100)));
    }

    #[test]
    fn a_save_missed_before_the_watch_began_is_read_after_quiet() {
        let t0 = Instant::now();
        let mut d = debouncer();
        d.missed_save(t0);
        assert_eq!(d.read_at(), Some(at(t0, 100)));
    }

    #[test]
    fn with_closes_a_write_in_progress_waits_for_the_close_however_long_the_pause() {
        let t0 = Instant::now();
        let mut d = with_closes();
        d.saw(t0, Save::InProgress, false);
        assert_eq!(d.read_at(), None, "no read on a quiet period");
        // The writer pauses for a minute, then writes the rest and closes.
        d.saw(at(t0, 60_000), Save::InProgress, false);
        assert_eq!(d.read_at(), None);
        assert!(!d.is_due(at(t0, 120_000)));
        d.saw(at(t0, 60_001), Save::Complete, false);
        assert_eq!(d.read_at(), Some(at(t0, 60_001)), "read at the close");
    }

    #[test]
    fn with_closes_a_write_cancels_a_read_scheduled_before_it() {
        let t0 = Instant::now();
        let mut d = with_closes();
        d.saw(t0, Save::Complete, false);
        assert_eq!(d.read(t0, Found::Other), Verdict::Take);
        d.saw(at(t0, 2), Save::Complete, false);
        assert_eq!(d.read_at(), Some(at(t0, 10)));
        d.saw(at(t0, 3), Save::InProgress, false);
        assert_eq!(d.read_at(), None, "the next close says when");
    }

    #[test]
    fn an_attribute_change_is_read_after_quiet_unless_a_writer_is_open() {
        let kind = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions));
        assert_eq!(classify(&kind), Save::Attributes);
        let t0 = Instant::now();
        for mut d in [debouncer(), with_closes()] {
            d.saw(t0, Save::Attributes, false);
            assert_eq!(d.read_at(), Some(at(t0, 100)));
        }
        let mut d = with_closes();
        d.saw(t0, Save::InProgress, false);
        d.saw(at(t0, 5), Save::Attributes, false);
        assert_eq!(d.read_at(), None, "the writer's close is awaited");
    }

    #[test]
    fn with_closes_an_empty_file_after_a_close_is_still_read_again_until_max_wait() {
        let t0 = Instant::now();
        let mut d = with_closes();
        d.saw(t0, Save::Complete, false);
        assert_eq!(d.read(t0, Found::Empty), Verdict::WaitForRest);
        assert_eq!(d.read_at(), Some(at(t0, 100)));
        // The writer opens it again and writes: wait for that close.
        d.saw(at(t0, 40), Save::InProgress, false);
        assert_eq!(d.read_at(), None);
        d.saw(at(t0, 41), Save::Complete, false);
        assert_eq!(d.read_at(), Some(at(t0, 41)));
    }

    #[test]
    fn a_change_found_by_polling_is_read_at_once_unless_a_writer_is_open() {
        let t0 = Instant::now();
        let mut d = with_closes();
        d.changed_unseen(t0);
        assert_eq!(d.read_at(), Some(t0));
        let mut d = with_closes();
        d.saw(t0, Save::InProgress, false);
        d.changed_unseen(at(t0, 250));
        assert_eq!(d.read_at(), None);
    }
}
