//! Lock tokens: 128 bits straight from the OS CSPRNG, one per acquisition.
//!
//! `getrandom` asks the kernel every time. A user-space generator such as `ThreadRng` would be
//! faster, but rand 0.9 no longer reseeds it after `fork()`, so a forked child could repeat its
//! parent's next token and the two could release each other's lock (TESTPLAN 7.4).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A lock value: 32 lowercase hex digits. Cloning shares one allocation.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(Arc<str>);

impl Token {
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(hex(&bytes).into()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, stable, non-reversible name for logs: a token lets its holder release the lock,
    /// so it is never logged itself.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(&self.0)
    }
}

/// The fingerprint of a stored lock value (what [`Token::fingerprint`] gives for its token), so
/// that `status` output and logs name holders the same way.
pub(crate) fn fingerprint_of(value: &str) -> Fingerprint {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    Fingerprint(h.finish() as u32)
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.fingerprint())
    }
}

/// 8 hex digits that identify a token in logs without revealing it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint(u32);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_128_bit_hex_and_unique() {
        // TESTPLAN 7.4: 10^6 draws, no duplicate.
        let mut seen = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let t = Token::generate().unwrap();
            assert_eq!(t.as_str().len(), 32);
            assert!(t
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(seen.insert(t.as_str().to_owned()), "duplicate token");
        }
    }

    #[test]
    fn tokens_from_concurrent_threads_are_unique() {
        let per_thread = 20_000;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|_| Token::generate().unwrap().as_str().to_owned())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for t in h.join().unwrap() {
                assert!(seen.insert(t), "duplicate token across threads");
            }
        }
        assert_eq!(seen.len(), 8 * per_thread);
    }

    #[test]
    fn every_bit_position_varies() {
        // A token derived from time, pid or a counter would keep its high bits fixed.
        let mut ones = [0u32; 128];
        let draws = 4000;
        for _ in 0..draws {
            let t = Token::generate().unwrap();
            for (i, c) in t.as_str().chars().enumerate() {
                let v = c.to_digit(16).unwrap();
                for bit in 0..4 {
                    ones[i * 4 + bit] += (v >> bit) & 1;
                }
            }
        }
        for (i, n) in ones.iter().enumerate() {
            // Binomial(4000, 0.5): mean 2000, sd ~32; 1700..2300 is more than 9 sd wide.
            assert!((1700..2300).contains(n), "bit {i} set {n} times of {draws}");
        }
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let t = Token::generate().unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(t.as_str()));
        assert!(dbg.contains(&t.fingerprint().to_string()));
    }
}
