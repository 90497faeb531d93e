// Package certs holds the TLS certificates of berth's public listeners:
// it loads certificate and key files, picks one by the name a client
// asks for (SNI), and reloads them all at once without dropping a
// connection (tls.Config.GetCertificate reads the current set).
//
// Under systemd the files usually come as credentials:
//
//	# myapp.service
//	[Service]
//	LoadCredential=tls-0.crt:/etc/letsencrypt/live/example.com/fullchain.pem
//	LoadCredential=tls-0.key:/etc/letsencrypt/live/example.com/privkey.pem
//	ExecStart=/usr/bin/berth serve /srv/myapp --tls-cert tls-0.crt --tls-key tls-0.key
//
// A file name without a slash is looked up in $CREDENTIALS_DIRECTORY when
// that is set (see Resolve). systemd copies credentials when the service
// starts, so a renewed certificate given that way needs a restart (no
// connection is lost under socket activation); files named by path are
// read again on each Reload.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Pair names a certificate chain file and its key file (PEM).
type Pair struct {
	Cert, Key string
}

// Store is the current set of certificates. Its zero value is not
// usable; use New.
type Store struct {
	pairs []Pair
	cur   atomic.Pointer[set]
}

// set is one loaded generation of certificates.
type set struct {
	all    []*tls.Certificate
	byName map[string]*tls.Certificate // exact and "*.example.com" names
}

// New loads every pair; the first is the default for clients that send
// no name, or a name no certificate covers.
func New(pairs []Pair) (*Store, error) {
	if len(pairs) == 0 {
		return nil, errors.New("certs: no certificate given")
	}
	s := &Store{pairs: append([]Pair(nil), pairs...)}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads every pair again and switches to the new set at once.
// On error the current set stays in use, and the error names the file.
// Handshakes already done keep the certificate they used.
func (s *Store) Reload() error {
	st := &set{byName: map[string]*tls.Certificate{}}
	for _, p := range s.pairs {
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return fmt.Errorf("certificate %s with key %s: %w", p.Cert, p.Key, err)
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return fmt.Errorf("certificate %s: %w", p.Cert, err)
			}
			c.Leaf = leaf
		}
		st.all = append(st.all, &c)
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if _, dup := st.byName[n]; !dup { // the first pair naming it wins
				st.byName[n] = &c
			}
		}
	}
	s.cur.Store(st)
	return nil
}

// GetCertificate chooses the certificate for a handshake: the one whose
// name matches the client's SNI exactly, then by wildcard, else the
// first. It fits tls.Config.GetCertificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.cur.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if c, ok := st.byName[name]; ok {
		return c, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := st.byName["*"+name[i:]]; ok {
			return c, nil
		}
	}
	return st.all[0], nil
}

// Config returns a server tls.Config over the store: TLS 1.2 and later,
// Go's cipher suites, and ALPN offering HTTP/2 (when http2) and
// HTTP/1.1.
func (s *Store) Config(http2 bool) *tls.Config {
	protos := []string{"http/1.1"}
	if http2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
		NextProtos:     protos,
	}
}

// Resolve turns a --tls-cert or --tls-key value into a path: a name
// without a slash is a systemd credential when credDir
// ($CREDENTIALS_DIRECTORY) is set and holds it; anything else is a path
// as given.
func Resolve(name, credDir string) string {
	if credDir == "" || strings.ContainsRune(name, '/') {
		return name
	}
	p := filepath.Join(credDir, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return name
}
