//! PE/COFF parsing and the Authenticode image digest, as edk2 measures it.
//!
//! OVMF measures every EFI application it loads (the Linux kernel's EFI stub in
//! QEMU direct boot) with the Authenticode digest of the file. The register
//! value has to match what the firmware computes, so [`authenticode_digest`]
//! follows edk2's `MeasurePeImageAndExtend` (`OvmfPkg/IntelTdx/TdTcg2Dxe/
//! MeasureBootPeCoff.c`, the same algorithm as `SecurityPkg/Tcg/Tcg2Dxe/
//! MeasureBootPeCoff.c` and `DxeImageVerificationLib`'s `HashPeImage`):
//!
//! 1. hash `[0, CheckSum)` (CheckSum is at optional header + 64);
//! 2. if `NumberOfRvaAndSizes <= 4` (no certificate-table entry), hash from
//!    after the CheckSum to `SizeOfHeaders`; otherwise hash from after the
//!    CheckSum to the certificate-table data directory entry (index 4), skip
//!    its 8 bytes and hash the rest up to `SizeOfHeaders`;
//! 3. hash the raw data of every section with `SizeOfRawData != 0`, in
//!    ascending `PointerToRawData` order (a stable sort: edk2 uses an insertion
//!    sort, so equal keys keep table order);
//! 4. `sum = SizeOfHeaders + Σ SizeOfRawData`; if the file is longer than
//!    `sum`, hash `[sum, FileSize - CertSize)` where `CertSize` is the
//!    certificate-table directory's size (0 without the entry). If `FileSize <
//!    sum + CertSize` edk2 refuses the image (`EFI_UNSUPPORTED`), and so do we
//!    ([`PeError::TrailingDataUnderflow`]).
//!
//! Where edk2 differs from the Microsoft Authenticode specification:
//! - trailing data starts at `sum` (the *count* of hashed bytes), not at the
//!   end of the last section, and the certificate table is assumed to be the
//!   last `CertSize` bytes of the file: its file offset is never looked at. The
//!   two agree when sections follow the headers without gaps or overlaps and
//!   the table is at the end, as in signed Linux kernels (checked on the pinned
//!   Debian kernel: headers end at 0x1000, sections are contiguous, the table
//!   is the file's tail);
//! - no zero padding of the hashed data to a multiple of 8 bytes (some signing
//!   tools and dstack's `dstack-mr` add it; the pinned kernel's length is a
//!   multiple of 8, so it makes no difference there);
//! - an image without an `MZ` DOS header is read with its PE header at
//!   offset 0, as edk2 does.
//!
//! [`embedded_signature_digest`] reads the digest a signed image carries in its
//! own Authenticode signature (WIN_CERTIFICATE → PKCS#7 SignedData →
//! SpcIndirectDataContent → DigestInfo): for a correctly signed image it equals
//! [`authenticode_digest`] with the same algorithm, which gives a free test
//! vector on real kernels.
//!
//! Every offset and length read from the file is bounds-checked: malformed
//! input gives a [`PeError`], never a panic.

use ring::digest::{Context, SHA256, SHA384};

/// Why a PE/COFF image, or its embedded signature, could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeError {
    /// A structure runs past the end of the file.
    #[error("PE image truncated: {what} needs bytes {start:#x}..{end:#x}, file is {len:#x} bytes")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Its first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The file length.
        len: u64,
    },
    /// No `PE\0\0` signature where the DOS header points.
    #[error("no PE signature at offset {0:#x}")]
    NoPeSignature(u64),
    /// The optional header magic is neither PE32 (0x10b) nor PE32+ (0x20b).
    #[error("unknown optional header magic {0:#06x}")]
    BadOptionalMagic(u16),
    /// `SizeOfOptionalHeader` does not cover the fields that must be read.
    #[error("optional header too small: {size} bytes, need {need}")]
    OptionalHeaderTooSmall {
        /// `SizeOfOptionalHeader`.
        size: u16,
        /// The bytes needed.
        need: u64,
    },
    /// `SizeOfHeaders` ends before the header fields that the hash skips.
    #[error("SizeOfHeaders {size_of_headers:#x} ends before offset {need:#x}")]
    HeadersTooSmall {
        /// `SizeOfHeaders`.
        size_of_headers: u32,
        /// The offset the headers must reach.
        need: u64,
    },
    /// The file is shorter than the hashed headers, sections and the
    /// certificate table together (edk2 refuses such an image).
    #[error(
        "file is {len:#x} bytes, less than the {hashed:#x} hashed bytes plus the \
         {cert_size:#x}-byte certificate table"
    )]
    TrailingDataUnderflow {
        /// The file length.
        len: u64,
        /// SizeOfHeaders plus all SizeOfRawData.
        hashed: u64,
        /// The certificate-table size.
        cert_size: u64,
    },
    /// The certificate table holds no usable WIN_CERTIFICATE.
    #[error("certificate table: {0}")]
    BadCertificate(&'static str),
    /// The PKCS#7 signature could not be decoded.
    #[error("Authenticode signature: {0}")]
    BadSignature(String),
    /// The signature uses a digest algorithm other than SHA-256 or SHA-384.
    #[error("unsupported Authenticode digest algorithm {0}")]
    UnsupportedDigestAlgorithm(String),
}

/// The digest algorithms the measurements need: SHA-384 for TDX RTMRs,
/// SHA-256 for the digest Debian embeds in its kernel signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (OID 2.16.840.1.101.3.4.2.1).
    Sha256,
    /// SHA-384 (OID 2.16.840.1.101.3.4.2.2).
    Sha384,
}

impl HashAlgorithm {
    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            HashAlgorithm::Sha256 => &SHA256,
            HashAlgorithm::Sha384 => &SHA384,
        }
    }

    /// The algorithm's object identifier arcs.
    pub fn oid(self) -> &'static [u64] {
        match self {
            HashAlgorithm::Sha256 => &[2, 16, 840, 1, 101, 3, 4, 2, 1],
            HashAlgorithm::Sha384 => &[2, 16, 840, 1, 101, 3, 4, 2, 2],
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        self.ring().output_len()
    }
}

/// One section table entry (the fields the hash uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// The 8-byte section name.
    pub name: [u8; 8],
    /// `SizeOfRawData`: bytes of file data.
    pub size_of_raw_data: u32,
    /// `PointerToRawData`: file offset of the data.
    pub pointer_to_raw_data: u32,
}

/// The parsed, bounds-checked layout of a PE/COFF image: what the Authenticode
/// hash and the signature reader need, kept so both walk the same checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeLayout {
    /// File offset of the `PE\0\0` signature.
    pub pe_offset: usize,
    /// Whether the optional header is PE32+ (64-bit).
    pub pe32_plus: bool,
    /// File offset of the optional header's CheckSum field.
    pub checksum_offset: usize,
    /// `SizeOfHeaders`.
    pub size_of_headers: usize,
    /// `NumberOfRvaAndSizes`.
    pub number_of_rva_and_sizes: u32,
    /// File offset of the certificate-table data directory entry, when
    /// `NumberOfRvaAndSizes > 4`.
    pub cert_dir_offset: Option<usize>,
    /// The certificate table's (file offset, size), when the entry exists.
    pub cert_table: Option<(u32, u32)>,
    /// The section table in file order.
    pub sections: Vec<Section>,
}

/// The certificate-table data directory index.
const DIRECTORY_ENTRY_SECURITY: u32 = 4;

fn range<'a>(
    data: &'a [u8],
    start: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], PeError> {
    let end = start.saturating_add(len);
    let truncated = PeError::Truncated {
        what,
        start,
        end,
        len: data.len() as u64,
    };
    let s = usize::try_from(start).map_err(|_| truncated.clone())?;
    let e = usize::try_from(end).map_err(|_| truncated.clone())?;
    data.get(s..e).ok_or(truncated)
}

fn u16_at(data: &[u8], off: u64, what: &'static str) -> Result<u16, PeError> {
    let b = range(data, off, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], off: u64, what: &'static str) -> Result<u32, PeError> {
    let b = range(data, off, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parse and bounds-check the headers and the section table of `image`.
pub fn parse_pe(image: &[u8]) -> Result<PeLayout, PeError> {
    // DOS header: edk2 follows e_lfanew only when the MZ magic is present.
    let pe_offset = if image.get(0..2) == Some(b"MZ") {
        u64::from(u32_at(image, 0x3c, "DOS header e_lfanew")?)
    } else {
        0
    };
    if range(image, pe_offset, 4, "PE signature")? != b"PE\0\0" {
        return Err(PeError::NoPeSignature(pe_offset));
    }
    let coff = pe_offset + 4;
    range(image, coff, 20, "COFF header")?;
    let number_of_sections = u16_at(image, coff + 2, "COFF NumberOfSections")?;
    let size_of_optional_header = u16_at(image, coff + 16, "COFF SizeOfOptionalHeader")?;
    let opt = coff + 20;
    range(
        image,
        opt,
        u64::from(size_of_optional_header),
        "optional header",
    )?;
    let magic = u16_at(image, opt, "optional header magic")?;
    let (pe32_plus, nrva_off, dirs_off) = match magic {
        0x10b => (false, 92u64, 96u64),
        0x20b => (true, 108, 112),
        other => return Err(PeError::BadOptionalMagic(other)),
    };
    // The fixed part must reach NumberOfRvaAndSizes.
    if u64::from(size_of_optional_header) < dirs_off {
        return Err(PeError::OptionalHeaderTooSmall {
            size: size_of_optional_header,
            need: dirs_off,
        });
    }
    let size_of_headers = u32_at(image, opt + 60, "optional header SizeOfHeaders")?;
    let checksum_offset = opt + 64;
    let number_of_rva_and_sizes =
        u32_at(image, opt + nrva_off, "optional header NumberOfRvaAndSizes")?;

    let (cert_dir_offset, cert_table, header_need) =
        if number_of_rva_and_sizes > DIRECTORY_ENTRY_SECURITY {
            let dir = opt + dirs_off + 8 * u64::from(DIRECTORY_ENTRY_SECURITY);
            let need = dirs_off + 8 * u64::from(DIRECTORY_ENTRY_SECURITY + 1);
            if u64::from(size_of_optional_header) < need {
                return Err(PeError::OptionalHeaderTooSmall {
                    size: size_of_optional_header,
                    need,
                });
            }
            let addr = u32_at(image, dir, "certificate table directory")?;
            let size = u32_at(image, dir + 4, "certificate table directory")?;
            (Some(dir), Some((addr, size)), dir + 8)
        } else {
            (None, None, checksum_offset + 4)
        };
    if u64::from(size_of_headers) < header_need {
        return Err(PeError::HeadersTooSmall {
            size_of_headers,
            need: header_need,
        });
    }
    range(
        image,
        0,
        u64::from(size_of_headers),
        "headers (SizeOfHeaders)",
    )?;

    let table = opt + u64::from(size_of_optional_header);
    let table_bytes = range(
        image,
        table,
        40 * u64::from(number_of_sections),
        "section table",
    )?;
    let mut sections = Vec::with_capacity(usize::from(number_of_sections));
    for entry in table_bytes.chunks_exact(40) {
        let mut name = [0u8; 8];
        name.copy_from_slice(&entry[0..8]);
        let size_of_raw_data = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
        let pointer_to_raw_data = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]);
        if size_of_raw_data != 0 {
            range(
                image,
                u64::from(pointer_to_raw_data),
                u64::from(size_of_raw_data),
                "section raw data",
            )?;
        }
        sections.push(Section {
            name,
            size_of_raw_data,
            pointer_to_raw_data,
        });
    }

    // Offsets were checked against the file length, which fits in usize.
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(PeLayout {
        pe_offset: to_usize(pe_offset),
        pe32_plus,
        checksum_offset: to_usize(checksum_offset),
        size_of_headers: to_usize(u64::from(size_of_headers)),
        number_of_rva_and_sizes,
        cert_dir_offset: cert_dir_offset.map(to_usize),
        cert_table,
        sections,
    })
}

/// The Authenticode digest of `image` with `alg`, computed the way edk2
/// measures a PE image (see the module documentation for the exact ranges and
/// where they differ from the Authenticode specification).
pub fn authenticode_digest(image: &[u8], alg: HashAlgorithm) -> Result<Vec<u8>, PeError> {
    let layout = parse_pe(image)?;
    let mut ctx = Context::new(alg.ring());
    // parse_pe checked checksum_offset + 4 <= (cert dir end <=) SizeOfHeaders <= len.
    let soh = layout.size_of_headers;
    let after_checksum = layout.checksum_offset + 4;
    ctx.update(&image[..layout.checksum_offset]);
    match layout.cert_dir_offset {
        None => ctx.update(&image[after_checksum..soh]),
        Some(dir) => {
            ctx.update(&image[after_checksum..dir]);
            ctx.update(&image[dir + 8..soh]);
        }
    }

    let mut sections: Vec<&Section> = layout
        .sections
        .iter()
        .filter(|s| s.size_of_raw_data != 0)
        .collect();
    sections.sort_by_key(|s| s.pointer_to_raw_data); // stable, like edk2's insertion sort
    let mut hashed = soh as u64;
    for s in sections {
        let data = range(
            image,
            u64::from(s.pointer_to_raw_data),
            u64::from(s.size_of_raw_data),
            "section raw data",
        )?;
        ctx.update(data);
        hashed += u64::from(s.size_of_raw_data);
    }

    let len = image.len() as u64;
    if len > hashed {
        let cert_size = layout.cert_table.map_or(0, |(_, size)| u64::from(size));
        let end = hashed + cert_size;
        if len > end {
            ctx.update(range(image, hashed, len - end, "trailing data")?);
        } else if len < end {
            return Err(PeError::TrailingDataUnderflow {
                len,
                hashed,
                cert_size,
            });
        }
    }
    Ok(ctx.finish().as_ref().to_vec())
}

/// `WIN_CERT_REVISION_2_0`.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// The digest (algorithm and value) that the image's own Authenticode
/// signature vouches for: the first PKCS#7 WIN_CERTIFICATE of the certificate
/// table, its SpcIndirectDataContent's DigestInfo. `Ok(None)` when the image
/// has no certificate table. The signature itself is not verified: this is a
/// test vector for [`authenticode_digest`], not a trust decision.
pub fn embedded_signature_digest(
    image: &[u8],
) -> Result<Option<(HashAlgorithm, Vec<u8>)>, PeError> {
    let layout = parse_pe(image)?;
    let Some((addr, size)) = layout.cert_table else {
        return Ok(None);
    };
    if addr == 0 || size == 0 {
        return Ok(None);
    }
    let table = range(image, u64::from(addr), u64::from(size), "certificate table")?;
    // WIN_CERTIFICATE entries, each 8-byte aligned: u32 dwLength (including
    // this 8-byte header), u16 wRevision, u16 wCertificateType, data.
    let mut pos = 0usize;
    while pos + 8 <= table.len() {
        let length =
            u32::from_le_bytes([table[pos], table[pos + 1], table[pos + 2], table[pos + 3]])
                as usize;
        let revision = u16::from_le_bytes([table[pos + 4], table[pos + 5]]);
        let cert_type = u16::from_le_bytes([table[pos + 6], table[pos + 7]]);
        if length < 8 || length > table.len() - pos {
            return Err(PeError::BadCertificate(
                "WIN_CERTIFICATE length out of range",
            ));
        }
        if revision == WIN_CERT_REVISION_2_0 && cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA {
            let der = first_der_element(&table[pos + 8..pos + length])?;
            return spc_digest(der).map(Some);
        }
        pos += length.div_ceil(8) * 8;
    }
    Err(PeError::BadCertificate(
        "no PKCS#7 signed-data WIN_CERTIFICATE",
    ))
}

/// The first complete DER element of `buf` (WIN_CERTIFICATE data may be
/// followed by alignment padding, which a whole-buffer DER parse would refuse).
fn first_der_element(buf: &[u8]) -> Result<&[u8], PeError> {
    let bad = |m: &str| PeError::BadSignature(m.to_string());
    let first_len = *buf.get(1).ok_or_else(|| bad("signature too short"))?;
    let (header, content) = if first_len < 0x80 {
        (2usize, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return Err(bad("unsupported DER length form"));
        }
        let bytes = buf
            .get(2..2 + n)
            .ok_or_else(|| bad("signature too short"))?;
        (
            2 + n,
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
        )
    };
    let end = header
        .checked_add(content)
        .ok_or_else(|| bad("length overflow"))?;
    buf.get(..end)
        .ok_or_else(|| bad("signature element runs past the certificate"))
}

/// OID arcs of PKCS#7 signedData.
const OID_SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
/// OID arcs of SPC_INDIRECT_DATA_OBJID.
const OID_SPC_INDIRECT_DATA: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 2, 1, 4];

/// Decode ContentInfo(signedData) → SignedData.contentInfo (SPC indirect data)
/// → SpcIndirectDataContent.messageDigest (DigestInfo).
fn spc_digest(der: &[u8]) -> Result<(HashAlgorithm, Vec<u8>), PeError> {
    use yasna::models::ObjectIdentifier;
    use yasna::{ASN1Error, ASN1ErrorKind, Tag};

    let invalid = || ASN1Error::new(ASN1ErrorKind::Invalid);
    let parsed: Result<(ObjectIdentifier, Vec<u8>), ASN1Error> = yasna::parse_ber(der, |r| {
        r.read_sequence(|r| {
            if r.next().read_oid()?.components().as_slice() != OID_SIGNED_DATA {
                return Err(invalid());
            }
            r.next().read_tagged(Tag::context(0), |r| {
                r.read_sequence(|r| {
                    let _version = r.next().read_der()?;
                    let _digest_algorithms = r.next().read_der()?;
                    let out = r.next().read_sequence(|r| {
                        if r.next().read_oid()?.components().as_slice() != OID_SPC_INDIRECT_DATA {
                            return Err(invalid());
                        }
                        r.next().read_tagged(Tag::context(0), |r| {
                            r.read_sequence(|r| {
                                let _data = r.next().read_der()?; // SpcAttributeTypeAndOptionalValue
                                r.next().read_sequence(|r| {
                                    let oid = r.next().read_sequence(|r| {
                                        let oid = r.next().read_oid()?;
                                        let _params = r.read_optional(|r| r.read_der())?;
                                        Ok(oid)
                                    })?;
                                    let digest = r.next().read_bytes()?;
                                    Ok((oid, digest))
                                })
                            })
                        })
                    })?;
                    // certificates [0], crls [1], signerInfos: not needed.
                    while r.read_optional(|r| r.read_der())?.is_some() {}
                    Ok(out)
                })
            })
        })
    });
    let (oid, digest) = parsed.map_err(|e| PeError::BadSignature(e.to_string()))?;
    let alg = [HashAlgorithm::Sha256, HashAlgorithm::Sha384]
        .into_iter()
        .find(|a| oid.components().as_slice() == a.oid())
        .ok_or_else(|| PeError::UnsupportedDigestAlgorithm(oid.to_string()))?;
    if digest.len() != alg.digest_len() {
        return Err(PeError::BadSignature(format!(
            "{}-byte digest for a {}-byte algorithm",
            digest.len(),
            alg.digest_len()
        )));
    }
    Ok((alg, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: DOS header, PE header, optional header with
    /// `nrva` data directories, `sections` as (raw size, fill byte), contiguous
    /// after 0x200 bytes of headers, then `tail` bytes.
    fn build(nrva: u32, sections: &[(u32, u8)], tail: &[u8], cert: Option<(u32, u32)>) -> Vec<u8> {
        let mut img = vec![0u8; 0x200];
        img[0..2].copy_from_slice(b"MZ");
        img[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        img[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        img[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        let opt_size = 112 + 8 * nrva as usize;
        img[coff + 16..coff + 18].copy_from_slice(&(opt_size as u16).to_le_bytes());
        let opt = coff + 20;
        img[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        img[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
        img[opt + 64..opt + 68].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // CheckSum
        img[opt + 108..opt + 112].copy_from_slice(&nrva.to_le_bytes());
        if let Some((a, s)) = cert {
            let d = opt + 112 + 32;
            img[d..d + 4].copy_from_slice(&a.to_le_bytes());
            img[d + 4..d + 8].copy_from_slice(&s.to_le_bytes());
        }
        let mut ptr = 0x200u32;
        let table = opt + opt_size;
        for (i, (size, _)) in sections.iter().enumerate() {
            let e = table + 40 * i;
            img[e..e + 8].copy_from_slice(b".sect\0\0\0");
            img[e + 16..e + 20].copy_from_slice(&size.to_le_bytes());
            img[e + 20..e + 24].copy_from_slice(&ptr.to_le_bytes());
            ptr += size;
        }
        for (size, fill) in sections {
            img.extend(std::iter::repeat_n(*fill, *size as usize));
        }
        img.extend_from_slice(tail);
        img
    }

    fn sha256(parts: &[&[u8]]) -> Vec<u8> {
        let mut c = Context::new(&SHA256);
        for p in parts {
            c.update(p);
        }
        c.finish().as_ref().to_vec()
    }

    #[test]
    fn hashes_the_specified_ranges() {
        // Cert directory at opt + 112 + 32 = 0x58 + 0x90 = 0xe8; CheckSum at 0x98.
        let tail = [7u8; 16];
        let cert = [9u8; 24];
        let mut all_tail = tail.to_vec();
        all_tail.extend_from_slice(&cert);
        let img = build(16, &[(0x100, 1), (0x80, 2)], &all_tail, Some((0x390, 24)));
        let opt = 0x58;
        let dir = opt + 112 + 32;
        let expected = sha256(&[
            &img[..opt + 64],
            &img[opt + 68..dir],
            &img[dir + 8..0x200],
            &img[0x200..0x380],
            &tail,
        ]);
        assert_eq!(
            authenticode_digest(&img, HashAlgorithm::Sha256),
            Ok(expected)
        );
        // The checksum and the certificate directory entry are not hashed.
        let mut changed = img.clone();
        changed[opt + 64] ^= 0xff;
        changed[dir] ^= 0xff;
        assert_eq!(
            authenticode_digest(&changed, HashAlgorithm::Sha256),
            authenticode_digest(&img, HashAlgorithm::Sha256)
        );
        // The certificate bytes themselves are not hashed, the tail is.
        let mut c2 = img.clone();
        *c2.last_mut().expect("non-empty") ^= 1;
        assert_eq!(
            authenticode_digest(&c2, HashAlgorithm::Sha256),
            authenticode_digest(&img, HashAlgorithm::Sha256)
        );
        let mut c3 = img.clone();
        c3[0x380] ^= 1;
        assert_ne!(
            authenticode_digest(&c3, HashAlgorithm::Sha256),
            authenticode_digest(&img, HashAlgorithm::Sha256)
        );
    }

    #[test]
    fn without_a_certificate_directory_hashes_the_rest_of_the_headers() {
        let img = build(4, &[(0x40, 3)], &[], None);
        let opt = 0x58;
        let expected = sha256(&[&img[..opt + 64], &img[opt + 68..0x200], &img[0x200..0x240]]);
        assert_eq!(
            authenticode_digest(&img, HashAlgorithm::Sha256),
            Ok(expected)
        );
        assert_eq!(embedded_signature_digest(&img), Ok(None));
    }

    #[test]
    fn sections_are_hashed_in_file_order() {
        let mut img = build(16, &[(0x40, 1), (0x40, 2)], &[], None);
        // Swap the two section table entries: the hash must not change.
        let table = 0x58 + 112 + 128;
        let (a, b) = img[table..table + 80].split_at_mut(40);
        a.swap_with_slice(b);
        let opt = 0x58;
        let dir = opt + 112 + 32;
        let expected = sha256(&[
            &img[..opt + 64],
            &img[opt + 68..dir],
            &img[dir + 8..0x200],
            &img[0x200..0x280],
        ]);
        assert_eq!(
            authenticode_digest(&img, HashAlgorithm::Sha256),
            Ok(expected)
        );
    }

    #[test]
    fn certificate_larger_than_the_tail_is_refused() {
        let img = build(16, &[(0x40, 1)], &[0u8; 8], Some((0x240, 16)));
        assert!(matches!(
            authenticode_digest(&img, HashAlgorithm::Sha384),
            Err(PeError::TrailingDataUnderflow { .. })
        ));
    }

    #[test]
    fn malformed_headers_give_typed_errors() {
        assert!(matches!(parse_pe(b""), Err(PeError::Truncated { .. })));
        assert!(matches!(
            parse_pe(&[0u8; 64]),
            Err(PeError::NoPeSignature(0))
        ));
        let img = build(16, &[(0x40, 1)], &[], None);
        let mut bad = img.clone();
        bad[0x58] = 0x0c;
        assert_eq!(parse_pe(&bad), Err(PeError::BadOptionalMagic(0x20c)));
        let mut bad = img.clone();
        bad[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_pe(&bad), Err(PeError::Truncated { .. })));
        let mut bad = img.clone();
        bad[0x58 + 60..0x58 + 64].copy_from_slice(&0x90u32.to_le_bytes());
        assert!(matches!(
            parse_pe(&bad),
            Err(PeError::HeadersTooSmall { .. })
        ));
        assert!(matches!(
            parse_pe(&img[..0x230]),
            Err(PeError::Truncated { .. })
        ));
    }

    /// A DER DigestInfo-bearing Authenticode structure built by hand.
    fn pkcs7_with_digest(oid: &[u64], digest: &[u8]) -> Vec<u8> {
        use yasna::models::ObjectIdentifier;
        use yasna::Tag;
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(OID_SIGNED_DATA));
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next().write_u8(1);
                        w.next().write_set(|_| {});
                        w.next().write_sequence(|w| {
                            w.next()
                                .write_oid(&ObjectIdentifier::from_slice(OID_SPC_INDIRECT_DATA));
                            w.next().write_tagged(Tag::context(0), |w| {
                                w.write_sequence(|w| {
                                    w.next().write_sequence(|w| {
                                        w.next().write_oid(&ObjectIdentifier::from_slice(&[
                                            1, 3, 6, 1, 4, 1, 311, 2, 1, 15,
                                        ]));
                                    });
                                    w.next().write_sequence(|w| {
                                        w.next().write_sequence(|w| {
                                            w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                                            w.next().write_null();
                                        });
                                        w.next().write_bytes(digest);
                                    });
                                });
                            });
                        });
                        w.next().write_set(|_| {}); // signerInfos
                    });
                });
            });
        })
    }

    fn with_certificate(p7: &[u8]) -> Vec<u8> {
        let mut cert = Vec::new();
        cert.extend_from_slice(&((p7.len() + 8) as u32).to_le_bytes());
        cert.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
        cert.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
        cert.extend_from_slice(p7);
        while cert.len() % 8 != 0 {
            cert.push(0);
        }
        build(16, &[(0x40, 1)], &cert, Some((0x240, cert.len() as u32)))
    }

    #[test]
    fn reads_the_embedded_digest() {
        let digest = [0x5au8; 48];
        let img = with_certificate(&pkcs7_with_digest(HashAlgorithm::Sha384.oid(), &digest));
        assert_eq!(
            embedded_signature_digest(&img),
            Ok(Some((HashAlgorithm::Sha384, digest.to_vec())))
        );
        // The certificate is excluded from the image hash.
        assert!(authenticode_digest(&img, HashAlgorithm::Sha384).is_ok());

        let sha1 = with_certificate(&pkcs7_with_digest(&[1, 3, 14, 3, 2, 26], &[0u8; 20]));
        assert!(matches!(
            embedded_signature_digest(&sha1),
            Err(PeError::UnsupportedDigestAlgorithm(_))
        ));
        let short = with_certificate(&pkcs7_with_digest(HashAlgorithm::Sha256.oid(), &[0u8; 20]));
        assert!(matches!(
            embedded_signature_digest(&short),
            Err(PeError::BadSignature(_))
        ));
        let garbage = with_certificate(&[0x30, 0x03, 1, 2, 3]);
        assert!(matches!(
            embedded_signature_digest(&garbage),
            Err(PeError::BadSignature(_))
        ));
    }
}
