// ProctorLoop
