//! Lock tokens: 128 bits straight from the OS CSPRNG, one per acquisition.
//!
//! `getrandom` asks the kernel every time. A user-space generator such as `ThreadRng` would be
//! faster, but rand 0.9 no longer reseeds it after `fork()`, so a forked child could repeat its
//! parent's next token and the two could release each other's lock (docs/testing.md, "Tokens").

use std::fmt;

/// A lock value: 32 lowercase hex digits, held inline. It is copied into every request and
/// handle that needs it: 32 bytes cost less to copy than a shared allocation costs to make,
/// count and free, once per acquisition.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token([u8; 32]);

impl Token {
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(hex(&bytes)))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only `hex` makes a token's bytes: ASCII, so this never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A short, stable, non-reversible name for logs: a token lets its holder release the lock,
    /// so it is never logged itself.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(self.as_str())
    }
}

/// The fingerprint of a stored lock value (what [`Token::fingerprint`] gives for its token), so
/// that `status` output and logs name holders the same way.
///
/// It is 32-bit FNV-1a over the value's UTF-8 bytes, printed as 8 lowercase hex digits; the
/// definition is fixed and documented (docs/design.md, "Token fingerprints") so that a service
/// in another language, or built with another compiler, names a holder the same way.
/// std's `DefaultHasher` was used before, and its algorithm may change between Rust releases
/// (issue 12 §2.6). FNV-1a is written out here rather than taken from a crate: it is five
/// lines, the `fnv` crate has only the 64-bit variant behind `Hasher` (whose `str` hashing adds
/// a terminator byte), and the 32-bit variant is what other languages ship (Go's
/// `hash/fnv.New32a`). Not a cryptographic hash, and it needs not be: a token is 128 random
/// bits, so 32 bits of any hash of it leave about 2^96 candidates.
pub(crate) fn fingerprint_of(value: &str) -> Fingerprint {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = value
        .bytes()
        .fold(OFFSET_BASIS, |h, b| (h ^ u32::from(b)).wrapping_mul(PRIME));
    Fingerprint(hash)
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

impl Fingerprint {
    /// The 8 hex digits without a `String`, for requests built on the hot path.
    pub(crate) fn to_hex(self) -> [u8; 8] {
        hex(&self.0.to_be_bytes())
    }
}

fn hex<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    const { assert!(M == 2 * N) };
    let mut out = [0u8; M];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_128_bit_hex_and_unique() {
        // docs/testing.md, "Tokens": 10^6 draws, no duplicate.
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

    /// The fingerprint is FNV-1a 32 as documented in docs/design.md: the first three are the
    /// FNV specification's own test vectors, the token-shaped ones were computed with an
    /// independent implementation (a few lines of Python) and are also given in the docs.
    #[test]
    fn fingerprint_is_fnv1a_32_with_pinned_vectors() {
        for (value, expected) in [
            ("", "811c9dc5"),
            ("a", "e40c292c"),
            ("foobar", "bf9cf968"),
            ("0123456789abcdef0123456789abcdef", "86d04db5"),
            ("5f0c1e0b7a2d4c3e9f8a6b5c4d3e2f1a", "92fde7a6"),
        ] {
            assert_eq!(fingerprint_of(value).to_string(), expected, "{value:?}");
        }
        let t = Token(*b"0123456789abcdef0123456789abcdef");
        assert_eq!(t.fingerprint().to_string(), "86d04db5");
        assert_eq!(&t.fingerprint().to_hex(), b"86d04db5");
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let t = Token::generate().unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(t.as_str()));
        assert!(dbg.contains(&t.fingerprint().to_string()));
    }
}
