package lifecycle

// ByteRoom is project's byte quota (image_size_total) and what it holds
// against it now, the bytes of its uploads in flight included, so that a
// face can show how much is left (df of the mount). ok is false when no
// byte quota is set.
func ByteRoom(s *Service, project string) (limit, used int64, ok bool, err error) {
	if s.quota.Bytes == 0 {
		return 0, 0, false, nil
	}
	u, err := s.usageOf(project, "")
	if err != nil {
		return 0, 0, false, err
	}
	return s.quota.Bytes, u.bytes(), true, nil
}
