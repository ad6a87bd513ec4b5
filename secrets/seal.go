package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrWrongKey is wrapped by the error of a secret sealed under another
// key than the vault's.
var ErrWrongKey = errors.New("every agent of a cluster needs the same secrets_key")

// ErrDamaged is wrapped by the error of a sealed value that does not open
// under the vault's key: changed in storage, or copied there from another
// secret's name.
var ErrDamaged = errors.New("the sealed value is damaged or belongs to another secret")

// A sealed value is:
//
//	format (1 byte, formatV1) | key id (4 bytes) | nonce (12 bytes) | ciphertext and GCM tag
//
// The key id tells a value sealed under another key from a damaged one
// (both fail to open) without revealing the key: it is the start of an
// HMAC of a fixed text under the key. The additional data binds the
// header, the project and the name, so a value moved to another name or
// project does not open.
const (
	formatV1   = 1
	keyIDSize  = 4
	headerSize = 1 + keyIDSize
)

// sealer seals and opens values with one key. AES-GCM holds no state
// between calls, so one sealer serves every goroutine.
type sealer struct {
	aead  cipher.AEAD // with a random 12-byte nonce per seal, prepended
	keyID [keyIDSize]byte
}

func newSealer(key []byte) (sealer, error) {
	if len(key) != KeySize {
		return sealer{}, fmt.Errorf("secrets key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealer{}, err
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return sealer{}, err
	}
	s := sealer{aead: aead}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("opsrunner secrets key id"))
	copy(s.keyID[:], mac.Sum(nil))
	return s, nil
}

// seal encrypts value for project's secret name.
func (s sealer) seal(project, name string, value []byte) []byte {
	out := make([]byte, headerSize, headerSize+len(value)+s.aead.Overhead())
	out[0] = formatV1
	copy(out[1:], s.keyID[:])
	return s.aead.Seal(out, nil, value, additionalData(out[:headerSize], project, name))
}

// open decrypts what seal returned for project's secret name.
func (s sealer) open(project, name string, sealed []byte) ([]byte, error) {
	fail := func(err error) error {
		return fmt.Errorf("secret %s of project %s cannot be opened: %w", name, project, err)
	}
	switch {
	case len(sealed) < headerSize+s.aead.Overhead():
		return nil, fail(ErrDamaged)
	case sealed[0] != formatV1:
		return nil, fail(fmt.Errorf("sealed in format %d, which this agent does not know (sealed by a newer opsrunner?)", sealed[0]))
	case !hmac.Equal(sealed[1:headerSize], s.keyID[:]):
		return nil, fmt.Errorf("secret %s of project %s cannot be opened with this agent's key: %w", name, project, ErrWrongKey)
	}
	plain, err := s.aead.Open(nil, nil, sealed[headerSize:], additionalData(sealed[:headerSize], project, name))
	if err != nil {
		return nil, fail(ErrDamaged)
	}
	return plain, nil
}

// additionalData is what a sealed value is bound to besides its key.
func additionalData(header []byte, project, name string) []byte {
	ad := make([]byte, 0, len(header)+len(project)+len(name)+1)
	ad = append(ad, header...)
	ad = append(ad, project...)
	ad = append(ad, 0) // neither name holds a NUL: "ab"+"c" is not "a"+"bc"
	return append(ad, name...)
}
