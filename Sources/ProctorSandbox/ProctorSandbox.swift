// ProctorSandbox
