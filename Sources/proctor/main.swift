import ProctorCommands

// The command line lives in the ProctorCommands library (tests import it); this is the executable.
ProctorCommand.main()
