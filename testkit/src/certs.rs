//! Throwaway TLS certificates for tests, made with the `openssl` command (Debian's
//! openssl package): a CA, a server certificate for 127.0.0.1/localhost and a client
//! certificate it signed, one client certificate per API role (`O=fleet:<role>`), and a
//! self-signed "rogue" client certificate it did not.

use std::path::Path;
use std::process::Command;

/// Writes `ca.{crt,key}`, `server.{crt,key}`, `client.{crt,key}`, `rogue.{crt,key}` and
/// `{admin,operator,viewer}.{crt,key}` into `dir`. Panics with openssl's message if a step fails (test set-up).
pub fn make_test_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=fleet test CA",
    ]);
    openssl(dir, &ca);
    for (who, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
        ("rogue", "extendedKeyUsage=clientAuth\n"),
        ("admin", "extendedKeyUsage=clientAuth\n"),
        ("operator", "extendedKeyUsage=clientAuth\n"),
        ("viewer", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, crt, extf) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.crt"),
            format!("{who}.ext"),
        );
        if let Err(e) = std::fs::write(dir.join(&extf), ext) {
            panic!("cannot write {extf}: {e}");
        }
        // The API's roles come from the subject's Organization (`fleet:<role>`).
        let subj = match who {
            "admin" | "operator" | "viewer" => format!("/CN={who}/O=fleet:{who}"),
            _ => format!("/CN={who}"),
        };
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        let sign: Vec<&str> = if who == "rogue" {
            // Self-signed: not from the cluster's CA.
            vec!["-signkey", &key]
        } else {
            vec!["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
        };
        let mut x509 = vec!["x509", "-req", "-in", &csr];
        x509.extend(sign);
        x509.extend(["-out", &crt, "-days", "2", "-extfile", &extf]);
        openssl(dir, &x509);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
