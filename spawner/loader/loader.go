package loader

import (
	_ "embed"
	"fmt"
	"path/filepath"

	"github.com/google/renameio/v2"
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
// replaces the file atomically and flushes it to disk first, so a worker
// starting meanwhile, or after a crash, never reads a partial loader.
func WriteTo(dir string) (string, error) {
	path := filepath.Join(dir, FileName)
	if err := renameio.WriteFile(path, Source, 0o644, renameio.WithStaticPermissions(0o644)); err != nil {
		return "", fmt.Errorf("write node loader %s: %w", path, err)
	}
	return path, nil
}
