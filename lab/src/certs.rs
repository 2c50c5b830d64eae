//! The lab's own certificate authority: one CA per lab, and a certificate for every
//! etcd member, machine and the host's admin, written under the lab's state directory.
//!
//! Machines' certificates serve both ends of a connection: fleetd's API (server) and
//! fleetd's calls to etcd and to other fleetds' APIs (client: journal and status are
//! forwarded with it), so they carry both extended key usages. Keys are written 0600.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::{LabError, Result};

/// The API role machines get (`O=fleet:viewer`): enough to forward journal and status
/// reads to each other, nothing more.
pub const MACHINE_ORG: &str = "fleet:viewer";
/// The host's identity's API role.
pub const ADMIN_ORG: &str = "fleet:admin";

/// A certificate and its key on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What one certificate is for.
pub struct Subject<'a> {
    /// File name stem (`<stem>.crt`, `<stem>.key`).
    pub stem: &'a str,
    /// Common name; etcd takes it as the user name when no password is given.
    pub common_name: &'a str,
    /// Organization: the fleet API's role (`fleet:<role>`).
    pub organization: Option<&'a str>,
    /// Addresses and names the certificate serves under; none for a client-only one.
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
}

/// The lab's CA, able to issue certificates.
pub struct Ca {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Creates a new CA in `dir` (`ca.crt`, `ca.key`).
    pub fn create(dir: &Path, lab: &str) -> Result<Ca> {
        std::fs::create_dir_all(dir)
            .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("fleet-lab {lab} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(cert_error)?;
        write_file(&dir.join("ca.crt"), &cert.pem(), 0o644)?;
        write_file(&dir.join("ca.key"), &key.serialize_pem(), 0o600)?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate's path: what every party trusts.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues a certificate: for server and client authentication when it names
    /// addresses, for client authentication only otherwise.
    pub fn issue(&self, subject: &Subject) -> Result<Identity> {
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, subject.common_name);
        if let Some(org) = subject.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.subject_alt_names = subject
            .ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .collect();
        for name in &subject.dns {
            params.subject_alt_names.push(SanType::DnsName(
                name.clone().try_into().map_err(cert_error)?,
            ));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !params.subject_alt_names.is_empty() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_error)?;
        let identity = Identity {
            cert: self.dir.join(format!("{}.crt", subject.stem)),
            key: self.dir.join(format!("{}.key", subject.stem)),
        };
        write_file(&identity.cert, &cert.pem(), 0o644)?;
        write_file(&identity.key, &key.serialize_pem(), 0o600)?;
        Ok(identity)
    }
}

/// Writes a new file with `mode` from its creation (a key is never readable by others,
/// not even for an instant).
pub fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(LabError::io(format!("cannot create {}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(LabError::io(format!("cannot write {}", path.display())))
}

/// A random secret of 32 hex digits (128 bits from the kernel): etcd passwords.
pub fn new_password() -> Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(LabError::io("cannot read /proc/sys/kernel/random/uuid"))?;
    let more = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(LabError::io("cannot read /proc/sys/kernel/random/uuid"))?;
    Ok(format!("{}{}", uuid.trim(), more.trim()).replace('-', ""))
}

fn cert_error(e: rcgen::Error) -> LabError {
    LabError::InvalidArgument(format!("cannot make a lab certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openssl verifies what the CA issued, and sees the purposes and subject the
    /// other parties rely on (etcd's peers, fleetd's forwarding, the API's roles).
    #[test]
    fn issued_certificates_verify_for_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), "t").unwrap();
        let machine = ca
            .issue(&Subject {
                stem: "node1",
                common_name: "fleet-machine-abc",
                organization: Some(MACHINE_ORG),
                ips: vec!["10.231.0.2".parse().unwrap()],
                dns: vec!["node1".into()],
            })
            .unwrap();
        for purpose in ["sslserver", "sslclient"] {
            let out = std::process::Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(ca.cert())
                .arg(&machine.cert)
                .output()
                .unwrap();
            assert!(out.status.success(), "{purpose}: {out:?}");
        }
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&machine.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("O=fleet:viewer") || text.contains("O = fleet:viewer"),
            "{text}"
        );
        assert!(text.contains("IP Address:10.231.0.2"), "{text}");
        assert!(text.contains("DNS:node1"), "{text}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&machine.key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let admin = ca
            .issue(&Subject {
                stem: "admin",
                common_name: "fleet-admin",
                organization: Some(ADMIN_ORG),
                ips: vec![],
                dns: vec![],
            })
            .unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(ca.cert())
            .arg(&admin.cert)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "a client-only certificate serves nothing"
        );
    }
}
