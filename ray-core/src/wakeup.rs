//! An eventfd that interrupts a thread's `poll` of a socket: the thread that reads a
//! connection while nobody else needs it is told to look at who should read next.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A signal for a thread polling a socket (see [`Wakeup::poll`]).
pub(crate) struct Wakeup(OwnedFd);

impl Wakeup {
    pub(crate) fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel for a new object nothing else owns.
        Ok(Wakeup(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the current or next [`poll`](Self::poll) return.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd this struct owns.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Waits for a signal (consumed) or for `events` on `socket`: true when the socket has
    /// some of them. False after a signal alone or an interrupted wait: look again.
    pub(crate) fn poll(&self, socket: RawFd, events: libc::c_short) -> bool {
        let fd = |fd, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let mut fds = [fd(self.0.as_raw_fd(), libc::POLLIN), fd(socket, events)];
        // SAFETY: `fds` is a live array of two pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n <= 0 {
            return false; // EINTR: look again
        }
        if fds[0].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from the eventfd this struct owns
            // (non-blocking: nothing to read is not an error here).
            unsafe {
                libc::read(
                    fds[0].fd,
                    (&mut count as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
        fds[1].revents != 0
    }
}
