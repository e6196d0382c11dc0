//! The cluster auth token.
//!
//! 256 random bits from the operating system (ring's `SystemRandom`, i.e. `getrandom`). Its
//! text form is 64 lowercase hexadecimal characters. The token is never printed: `Debug`
//! redacts it, there is no `Display`, and the one way to get the text is the explicitly named
//! [`AuthToken::expose_text`], used to write the token file. Comparisons run in constant time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::NetError;

/// The environment variable holding the token (takes precedence over the file).
pub const TOKEN_ENV: &str = "RAY_RS_AUTH_TOKEN";

/// The token file's name inside a node's temp dir.
pub const TOKEN_FILE_NAME: &str = "auth_token";

/// Length of the token in bytes.
pub const TOKEN_BYTES: usize = 32;

/// The cluster's shared secret.
#[derive(Clone)]
pub struct AuthToken([u8; TOKEN_BYTES]);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

impl PartialEq for AuthToken {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for AuthToken {}

impl Drop for AuthToken {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

impl AuthToken {
    /// A fresh random token.
    pub fn generate() -> Result<Self, NetError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| NetError::Random)?;
        Ok(AuthToken(bytes))
    }

    /// Parses the text form (64 hexadecimal characters; surrounding whitespace is ignored).
    /// `source_name` names where the text came from, for the error message, which never
    /// contains the text itself.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, NetError> {
        let text = text.trim();
        let bad = |detail: String| NetError::BadToken {
            source_name: source_name.to_string(),
            detail,
        };
        if text.len() != TOKEN_BYTES * 2 {
            return Err(bad(format!(
                "expected {} hexadecimal characters, got {} characters",
                TOKEN_BYTES * 2,
                text.chars().count()
            )));
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => bytes[i] = (hi << 4) | lo,
                _ => {
                    let pos = if hi.is_none() { 2 * i } else { 2 * i + 1 };
                    return Err(bad(format!(
                        "character {} is not a hexadecimal digit",
                        pos + 1
                    )));
                }
            }
        }
        Ok(AuthToken(bytes))
    }

    /// The text form. Only for writing the token file or handing it to a child process's
    /// environment; never log it.
    pub fn expose_text(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(TOKEN_BYTES * 2);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    /// HMAC-SHA256 keyed by the token.
    pub fn hmac(&self, parts: &[&[u8]]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign()
    }

    /// Checks an HMAC-SHA256 tag keyed by the token, in constant time.
    pub fn verify_hmac(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let ours = self.hmac(parts);
        ct_eq(ours.as_ref(), tag)
    }

    /// Writes the token to a new file `path` with mode 0600. Fails if the path exists (also as a
    /// symlink, which is never followed): a token file is never overwritten.
    pub fn write_new_file(&self, path: &Path) -> Result<(), NetError> {
        let err = |reason: String| NetError::TokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| err(format!("cannot create it: {e}")))?;
        let mut text = self.expose_text();
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| err(format!("cannot write it: {e}")))
    }

    /// Reads the token file, refusing a symlink, a file not owned by this user, and a file that
    /// others can read or write.
    pub fn read_file(path: &Path) -> Result<Self, NetError> {
        let err = |reason: String| NetError::TokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| err(format!("cannot open it: {e}")))?;
        check_private_file(&file).map_err(err)?;
        let mut text = String::new();
        file.take(256)
            .read_to_string(&mut text)
            .map_err(|e| err(format!("cannot read it: {e}")))?;
        let token = AuthToken::parse(&text, &path.display().to_string());
        text.clear();
        token
    }

    /// The token from `RAY_RS_AUTH_TOKEN` when set, else from `file`; [`NetError::NoToken`] when
    /// neither exists.
    pub fn from_env_or_file(file: &Path) -> Result<Self, NetError> {
        if let Some(text) = std::env::var_os(TOKEN_ENV) {
            let text = text.into_string().map_err(|_| NetError::BadToken {
                source_name: TOKEN_ENV.to_string(),
                detail: "not valid UTF-8".to_string(),
            })?;
            return AuthToken::parse(&text, TOKEN_ENV);
        }
        match std::fs::symlink_metadata(file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NetError::NoToken {
                path: file.to_path_buf(),
            }),
            _ => AuthToken::read_file(file),
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Checks that an open file is a regular file owned by this user and not accessible to group
/// or others.
pub fn check_private_file(file: &File) -> Result<(), String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".to_string());
    }
    let uid = effective_uid();
    if meta.uid() != uid {
        return Err(format!(
            "owned by uid {}, not by this user (uid {uid}); refusing it",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "mode {:o} lets other users access it; expected 600",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_errors_hide_the_text() {
        let t = AuthToken::generate().unwrap();
        let text = t.expose_text();
        assert_eq!(text.len(), 64);
        assert_eq!(AuthToken::parse(&format!(" {text}\n"), "x").unwrap(), t);
        assert_ne!(AuthToken::generate().unwrap(), t);
        assert_eq!(format!("{t:?}"), "AuthToken(<redacted>)");
        let mut wrong = text.clone();
        wrong.replace_range(10..11, "g");
        let e = AuthToken::parse(&wrong, "RAY_RS_AUTH_TOKEN")
            .unwrap_err()
            .to_string();
        assert!(e.contains("character 11"), "{e}");
        assert!(!e.contains(&text[..20]), "{e}");
        let e = AuthToken::parse(&text[1..], "f").unwrap_err().to_string();
        assert!(e.contains("got 63"), "{e}");
    }

    #[test]
    fn file_is_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("ray-net-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(TOKEN_FILE_NAME);
        let t = AuthToken::generate().unwrap();
        t.write_new_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(AuthToken::read_file(&path).unwrap(), t);
        assert!(
            AuthToken::generate()
                .unwrap()
                .write_new_file(&path)
                .is_err()
        );
        // A symlink is neither followed for writing nor for reading.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(AuthToken::read_file(&link).is_err());
        assert!(t.write_new_file(&link).is_err());
        // A file others can read is refused.
        let loose = dir.join("loose");
        std::fs::write(&loose, t.expose_text()).unwrap();
        std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let e = AuthToken::read_file(&loose).unwrap_err().to_string();
        assert!(e.contains("mode 644"), "{e}");
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
