package systemd

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// workerUser resolves who runs the workers: cfg.User/Group, or the owner
// of the app directory and that user's primary group.
func (b *Backend) workerUser(dir string) (usr, grp string, uid, gid int, err error) {
	var u *user.User
	if b.cfg.User != "" {
		u, err = lookupUser(b.cfg.User)
		if err != nil {
			return "", "", 0, 0, fmt.Errorf("worker user %q: %w", b.cfg.User, err)
		}
	} else {
		fi, err := os.Stat(dir)
		if err != nil {
			return "", "", 0, 0, fmt.Errorf("app directory: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid == 0 {
			return "", "", 0, 0, fmt.Errorf("app directory %s is owned by root, and workers do not run as root unless asked: chown it to the app's user, or pass --user USER (--user root to really run them as root)", dir)
		}
		id := strconv.Itoa(int(st.Uid))
		if u, err = user.LookupId(id); err != nil {
			// An owner with no passwd entry: run as the bare uid.
			u = &user.User{Uid: id, Gid: strconv.Itoa(int(st.Gid)), Username: id}
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	usr, grp = u.Username, b.cfg.Group
	if grp != "" {
		g, err := user.LookupGroup(grp)
		if err != nil {
			if _, nerr := strconv.Atoi(grp); nerr != nil {
				return "", "", 0, 0, fmt.Errorf("worker group %q: %w", grp, err)
			}
			g = &user.Group{Gid: grp}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return usr, grp, uid, gid, nil
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, nerr := strconv.Atoi(name); nerr == nil {
		if u, err := user.LookupId(name); err == nil {
			return u, nil
		}
		return &user.User{Uid: name, Gid: name, Username: name}, nil
	}
	return nil, err
}
