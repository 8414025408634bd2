// ProctorAgents
