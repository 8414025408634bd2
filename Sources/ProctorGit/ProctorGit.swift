// ProctorGit
