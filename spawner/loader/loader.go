package loader

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// Source is loader.cjs, the file a Node worker runs with
// `node --require`.
//
//go:embed loader.cjs
var Source []byte

// FileName is the name WriteTo gives the loader file.
const FileName = "berth-loader.cjs"

// WriteTo writes Source to dir/FileName, readable by every user (mode 0644)
// so workers running as another user can load it, and returns its path. It
// replaces the file atomically, so a worker starting meanwhile never reads a
// partial loader.
func WriteTo(dir string) (path string, err error) {
	path = filepath.Join(dir, FileName)
	tmp, err := os.CreateTemp(dir, FileName+".*")
	if err != nil {
		return "", fmt.Errorf("write node loader in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(Source); err != nil {
		return "", fmt.Errorf("write node loader %s: %w", tmp.Name(), err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return "", fmt.Errorf("write node loader %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return "", fmt.Errorf("write node loader %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write node loader %s: %w", path, err)
	}
	return path, nil
}
