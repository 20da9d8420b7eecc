/* How a generation ended: shared by the scheduler and the API layer. */
#ifndef NB_FINISH_H
#define NB_FINISH_H

enum nb_finish {
	NB_FINISH_NONE = 0, /* still running */
	NB_FINISH_STOP,     /* end of sequence, end of turn or a stop string */
	NB_FINISH_LENGTH,   /* max_tokens or the context */
	NB_FINISH_CANCEL,   /* the client went away, or shutdown */
	NB_FINISH_ERROR,
};

#endif
